"""Differential privacy for torch training: DP-SGD through Opacus, its guarantee kept in the model bundle.

    model, optimizer, loader = conveyor.privacy.make_private(model, optimizer, loader, epsilon=3.0, epochs=10)
    for _ in range(10):
        for x, y in loader:  # train as usual
            ...
    conveyor.model.save(model, fn_args)  # the manifest's "privacy": epsilon spent, delta, noise, ...

A (ε, δ) guarantee bounds what the model can give away about any one training row: whether a
row was in the data or not changes the odds of any outcome by at most a factor e^ε, except
with probability δ. Smaller ε is more private; δ must stay well below 1/rows.

``conveyor.model.save`` recognises the wrapped module, saves the plain network (Opacus's
hooks left out) and records in the manifest what the accountant has spent by then, so save
once training is done. Opacus draws its noise and its batches from torch's generator, which
the Trainer seeds before ``run_fn``, so a Trainer run repeats; ``secure_mode=True`` draws
from the operating system instead, as a model meant for production should (it needs
``torchcsprng``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conveyor._internal.extras import require

MECHANISM = "DP-SGD"
_ACCOUNTANTS = ("prv", "rdp")  # not Opacus's "gdp": it can underestimate ε, so what it records is no guarantee
_PRV_GRID_POINTS = 2**23  # beyond this the PRV accountant takes minutes and gigabytes; RDP bounds ε instead
_LEDGER = "conveyor_privacy"  # set on the wrapped module by make_private, read by conveyor.model.save
_CARRIED = ("classes_", "conveyor_outputs", "conveyor_init")  # torch-flavor attributes a user may set on the wrapper

__all__ = ["MECHANISM", "default_delta", "describe", "for_bundle", "make_private"]


@dataclass(frozen=True)
class _Ledger:
    """What the bundle's record is computed from when the model is saved, not when it is wrapped."""

    accountant: Any
    optimizer: Any
    delta: float
    sample_rate: float
    target_epsilon: float | None
    secure_mode: bool


def default_delta(rows: int) -> float:
    """δ = 1 / (10 · rows): at δ = 1/rows, releasing one whole row at random would still meet the bound."""
    return 1.0 / (10 * rows)


def make_private(
    model: Any,
    optimizer: Any,
    data_loader: Any,
    *,
    epsilon: float | None = None,
    noise_multiplier: float | None = None,
    delta: float | None = None,
    max_grad_norm: float = 1.0,
    epochs: int | None = None,
    accountant: str = "prv",
    secure_mode: bool = False,
) -> tuple[Any, Any, Any]:
    """Wrap a torch training loop for DP-SGD: per-row gradients clipped, Gaussian noise added, batches Poisson-sampled.

    Give exactly one of ``epsilon`` (the budget to end with after ``epochs`` epochs; Opacus
    picks the noise) or ``noise_multiplier`` (the noise; the budget spent is whatever the
    training took). Train with the three objects returned in place of the ones given.

    Args:
        model: the ``torch.nn.Module`` to train; Opacus must support its layers (no BatchNorm).
        optimizer: a torch optimizer over ``model``'s parameters.
        data_loader: a ``DataLoader`` over a dataset with a length.
        epsilon: the target ε after ``epochs`` epochs.
        noise_multiplier: the noise's standard deviation relative to ``max_grad_norm``.
        delta: δ; by default ``default_delta(rows)``, 1 / (10 · rows).
        max_grad_norm: each row's gradient is clipped to this L2 norm.
        epochs: how many epochs will be trained; needed with ``epsilon``.
        accountant: Opacus's privacy accountant: ``"prv"`` (tightest) or ``"rdp"``.
        secure_mode: draw noise and batches from a cryptographic generator (needs ``torchcsprng``).

    Returns:
        The wrapped model, optimizer and data loader.

    Raises:
        TypeError: both or neither of ``epsilon`` and ``noise_multiplier``, ``epsilon`` without ``epochs``,
            or a loader whose dataset has no length.
        ValueError: ``epsilon``, ``noise_multiplier`` or ``max_grad_norm`` not a finite number above 0,
            ``epochs`` not a whole number of 1 or more, ``delta`` not below 1/rows, an unknown
            ``accountant``, or a loader with no rows.
        MissingExtraError: Opacus is not installed.

    Example:
        >>> model, optimizer, loader = make_private(model, optimizer, loader, noise_multiplier=1.1)
    """
    _check(epsilon, noise_multiplier, epochs, max_grad_norm, delta, accountant)
    opacus = require("opacus", "privacy", "conveyor.privacy.make_private")
    rows = _rows(data_loader)
    if delta is not None and delta >= 1 / rows:
        msg = f"make_private's delta must be well below 1/rows (1/{rows}), or one row could leak by that chance alone; got {delta!r}."
        raise ValueError(msg)
    delta = default_delta(rows) if delta is None else delta
    engine = opacus.PrivacyEngine(accountant=accountant, secure_mode=secure_mode)
    common = {"module": model, "optimizer": optimizer, "data_loader": data_loader, "max_grad_norm": max_grad_norm}
    if epsilon is None:
        wrapped, dp_optimizer, dp_loader = engine.make_private(noise_multiplier=noise_multiplier, **common)
    else:
        noise = _noise_for(epsilon, delta, len(data_loader), epochs, accountant)
        wrapped, dp_optimizer, dp_loader = engine.make_private(noise_multiplier=noise, **common)
    ledger = _Ledger(engine.accountant, dp_optimizer, delta, dp_loader.sample_rate, epsilon, secure_mode)
    setattr(wrapped, _LEDGER, ledger)
    return wrapped, dp_optimizer, dp_loader


def _noise_for(epsilon: float, delta: float, batches: int, epochs: int, accountant: str) -> float:
    """The noise that spends ``epsilon`` in exactly ``epochs · batches`` steps, as saving counts it.

    Opacus's search (``get_noise_multiplier``, the same bisection to 0.01 of ε) has two faults
    here: ``make_private_with_epsilon`` counts ``int(epochs / sample_rate)`` steps, one short
    when the division rounds down (75 batches, 3 epochs: 224), so the run overshot its target;
    and it asks PRV for ε at every trial noise however low, where PRV's grid takes gigabytes (a
    target ε of 100 took 23 s and 1.9 GB, of 1000 ran out of memory). Each trial here is
    counted as ``_spent`` counts the saved model: by RDP where PRV's grid would not fit. And
    Opacus's bisection never ends where PRV's ε jumps over its tolerance (a target of 1000 at
    rate 0.1 over 10 steps ran past 15 minutes): this one ends when the noise is known to 1e-6.
    """
    from opacus.accountants import create_accountant

    def spent(noise: float) -> float:
        trial = create_accountant(mechanism=accountant)
        trial.history = [(noise, 1 / batches, epochs * batches)]
        return _epsilon(trial, delta)[1]

    low, high, at_high = 0.0, 10.0, math.inf
    while at_high > epsilon:
        high *= 2
        if high > _MAX_NOISE:
            msg = f"make_private cannot reach epsilon={epsilon!r} in {epochs} epochs with any noise Opacus allows; raise epsilon or train fewer epochs."
            raise ValueError(msg)
        at_high = spent(high)
    # PRV's ε can jump past the tolerance as the noise moves by the last bits (at ε=1000, from
    # 990 to inf): a bracket that stops narrowing ends the search, with the side under ε.
    while epsilon - at_high > _EPSILON_TOLERANCE and high - low > _NOISE_TOLERANCE * high:
        middle = (low + high) / 2
        at_middle = spent(middle)
        if at_middle < epsilon:
            high, at_high = middle, at_middle
        else:
            low = middle
    return high


_MAX_NOISE = 1e6  # Opacus's MAX_SIGMA
_EPSILON_TOLERANCE = 0.01  # Opacus's: the ε reached is within this of the target, never above it
_NOISE_TOLERANCE = 1e-6  # relative: the noise is known to this, if ε cannot come within its tolerance


def _check(
    epsilon: float | None,
    noise_multiplier: float | None,
    epochs: int | None,
    max_grad_norm: float,
    delta: float | None,
    accountant: str,
) -> None:
    if (epsilon is None) == (noise_multiplier is None):
        given = "both were" if epsilon is not None else "neither was"
        msg = (
            f"make_private takes exactly one of epsilon= (the budget to reach) and noise_multiplier= "
            f"(the noise to add); {given} given."
        )
        raise TypeError(msg)
    if epsilon is not None and epochs is None:
        msg = "make_private(epsilon=...) needs epochs=, the number of epochs you will train, to choose the noise."
        raise TypeError(msg)
    for name, value in (("epsilon", epsilon), ("noise_multiplier", noise_multiplier), ("max_grad_norm", max_grad_norm)):
        if value is not None and not (_is_number(value) and 0 < value < math.inf):  # ε=inf promises nothing
            msg = f"make_private's {name} must be a finite number above 0, got {value!r}."
            raise ValueError(msg)
    if epochs is not None and not (
        isinstance(epochs, numbers.Integral) and not isinstance(epochs, bool) and epochs >= 1
    ):
        msg = f"make_private's epochs must be a whole number of 1 or more, got {epochs!r}."
        raise ValueError(msg)
    if delta is not None and not (_is_number(delta) and 0 < delta < 1):
        msg = f"make_private's delta must lie between 0 and 1 (well below 1/rows), got {delta!r}."
        raise ValueError(msg)
    if accountant not in _ACCOUNTANTS:
        msg = f"make_private's accountant must be one of {', '.join(map(repr, _ACCOUNTANTS))}, got {accountant!r}."
        raise ValueError(msg)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _rows(data_loader: Any) -> int:
    """How many rows the loader draws from: δ and the sampling rate are set by it."""
    try:
        rows = len(data_loader.dataset)
    except (AttributeError, TypeError) as e:
        msg = "make_private needs a DataLoader over a dataset with a length (a map-style dataset, not an IterableDataset)."
        raise TypeError(msg) from e
    if rows == 0:
        msg = "make_private's data loader has no rows to train on."
        raise ValueError(msg)
    return rows


def for_bundle(model: Any) -> tuple[Any, dict[str, Any] | None]:
    """What ``conveyor.model.save`` keeps of an Opacus module: the plain network and the privacy record.

    The network is a copy without Opacus's hooks (TorchScript cannot compile them), so the
    wrapper trains on unchanged. The record is None for a module wrapped by Opacus's own
    ``PrivacyEngine``, whose accountant conveyor cannot see: pass it in ``metadata=``.
    """
    grad_sample = require("opacus.grad_sample", "privacy", "saving a model made private with Opacus")
    if not isinstance(model, grad_sample.GradSampleModule):
        return model, None
    plain = _without_hooks(model)
    for name in _CARRIED:
        if name in vars(model) and not hasattr(plain, name):
            setattr(plain, name, vars(model)[name])
    ledger = vars(model).get(_LEDGER)
    return plain, None if ledger is None else _record(ledger)


def _without_hooks(wrapped: Any) -> Any:
    """A copy of the wrapped network, taken while Opacus's hooks are off it; they go back after."""
    enabled = wrapped.hooks_enabled
    wrapped.remove_hooks()
    try:
        return copy.deepcopy(wrapped._module)
    finally:
        wrapped.add_hooks(
            loss_reduction=wrapped.loss_reduction,
            batch_first=wrapped.batch_first,
            force_functorch=wrapped.force_functorch,
        )
        if not enabled:
            wrapped.disable_hooks()


def _record(ledger: _Ledger) -> dict[str, Any]:
    """The manifest's ``privacy`` block: the guarantee spent so far and the mechanism's settings."""
    opacus = require("opacus", "privacy", "recording a model's privacy")
    history = list(ledger.accountant.history)
    steps = sum(int(done) for _, _, done in history)
    unnoised = sum(int(done) for noise, _, done in history if not noise > 0)
    if unnoised:
        msg = (
            f"{unnoised} of the {steps} DP-SGD steps of this model added no noise (noise_multiplier 0), so it is "
            "not differentially private and conveyor will not record a guarantee; keep the optimizer's "
            "noise_multiplier above 0, or save model.to_standard_module() to keep the network with no privacy claim."
        )
        raise ValueError(msg)
    accountant, epsilon = _spent(ledger.accountant, ledger.delta) if steps else (ledger.accountant.mechanism(), 0.0)
    record: dict[str, Any] = {
        "mechanism": MECHANISM,
        "library": "opacus",
        "library_version": opacus.__version__,
        "accountant": accountant,
        "epsilon": epsilon,
        "delta": ledger.delta,
        "noise_multiplier": float(ledger.optimizer.noise_multiplier),
        "max_grad_norm": ledger.optimizer.max_grad_norm,
        "sample_rate": ledger.sample_rate,
        "steps": steps,
        "secure_mode": ledger.secure_mode,
    }
    if ledger.target_epsilon is not None:
        record["target_epsilon"] = ledger.target_epsilon
    return record


def _spent(accountant: Any, delta: float) -> tuple[str, float]:
    """The accountant that bounds ε, and the ε: PRV's, unless its grid would not fit, then RDP's over the same steps.

    At low noise or over very many steps PRV discretizes on billions of points (a noise
    multiplier of 0.1 over 1000 steps at rate 0.01: 194 million), where saving would hang or
    run out of memory. RDP bounds ε as validly, a little more loosely, in milliseconds.
    """
    mechanism, epsilon = _epsilon(accountant, delta)
    if not math.isfinite(epsilon):
        msg = (
            f"This model's DP-SGD noise is so low that its ε is unbounded ({epsilon}): it is not differentially "
            "private; raise noise_multiplier, or save model.to_standard_module() to keep the network with no privacy claim."
        )
        raise ValueError(msg)
    return mechanism, epsilon


def _epsilon(accountant: Any, delta: float) -> tuple[str, float]:
    """``_spent``'s accountant and ε, which may be infinite.

    PRV's grid is sized once: its size decides between PRV and RDP, and a copy of the
    accountant is handed that grid, so ``get_epsilon`` does not size it again (the sizing
    runs RDP over every order, half of PRV's cost here; measured). Where PRV fails on its grid
    (at very low noise its exponentials overflow, or its discrete mean strays), RDP bounds ε.
    """
    import numpy as np
    from opacus.accountants import PRVAccountant, RDPAccountant

    asked, history = accountant.mechanism(), list(accountant.history)
    with _prv_grid_sized(asked):  # RDP standing in for PRV: its advice to widen the orders is not the user's to take
        if asked == "prv":
            domain = _prv_domain(accountant, delta)
            if domain.size <= _PRV_GRID_POINTS:
                prv = PRVAccountant()
                prv.history = history
                prv._get_domain = lambda **_: domain  # type: ignore[method-assign]
                try:
                    with np.errstate(over="raise", invalid="raise"):
                        return "prv", float(prv.get_epsilon(delta))
                except (RuntimeError, FloatingPointError):  # at very low noise PRV overflows, or its mean strays
                    pass
            accountant = RDPAccountant()
            accountant.history = history
        return accountant.mechanism(), float(accountant.get_epsilon(delta))


def _prv_domain(accountant: Any, delta: float) -> Any:
    """The grid Opacus's PRV accountant would discretize on, with the errors its get_epsilon defaults to."""
    from opacus.accountants.analysis.prv import PoissonSubsampledGaussianPRV

    prvs = [PoissonSubsampledGaussianPRV(rate, noise) for noise, rate, _ in accountant.history]
    compositions = [int(done) for _, _, done in accountant.history]
    return accountant._get_domain(
        prvs=prvs, num_self_compositions=compositions, eps_error=0.01, delta_error=delta / 1000
    )


@contextlib.contextmanager
def _prv_grid_sized(accountant: str) -> Iterator[None]:
    """The PRV accountant without RDP's "Optimal order is the largest alpha" warning.

    PRV sizes its grid with an RDP bound, which warns at low noise (as in the trial noise levels
    of the search for a target ε); the grid is then wider than it needs to be, which costs time,
    not accuracy. With
    the RDP accountant the warning says ε could be tighter, so it is left to show.
    """
    with warnings.catch_warnings():
        if accountant == "prv":
            warnings.filterwarnings("ignore", r"Optimal order is the (largest|smallest) alpha", UserWarning)
        yield


def describe(record: dict[str, Any]) -> str:
    """A bundle's privacy record on one line, as ``conveyor show`` prints it.

    Example:
        >>> describe({"epsilon": 2.93, "delta": 1e-05, "noise_multiplier": 1.1, "max_grad_norm": 1.0, "steps": 40})
        'differential privacy: ε=2.93 (δ=1e-05), noise multiplier 1.1, max grad norm 1.0, 40 steps'
    """
    epsilon, target, digits = record["epsilon"], record.get("target_epsilon"), 3
    while target is not None and epsilon != target and f"{epsilon:.{digits}g}" == f"{target:g}" and digits < 17:
        digits += 1  # the ε spent, 3.997, must not read as its target, 4
    line = (
        f"differential privacy: ε={epsilon:.{digits}g} (δ={record['delta']:.3g}), "
        f"noise multiplier {record['noise_multiplier']:.3g}, max grad norm {record['max_grad_norm']}"
    )
    if record.get("target_epsilon") is not None:
        line += f", target ε={record['target_epsilon']:g}"
    if record.get("steps") is not None:
        line += f", {record['steps']} steps"
    return line
