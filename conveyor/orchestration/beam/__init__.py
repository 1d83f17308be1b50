"""The Apache Beam engine: a step's folds and maps as Beam pipelines (``pip install 'conveyor[beam]'``).

A step runs here when it, its pipeline or the ``InteractiveContext`` is given
``beam_pipeline_args``; ``engine.BeamEngine`` is what the runner sets around its executor, and
``combine`` holds the ``CombineFn``s that wrap the same combiners the local engine folds.
"""
