"""A plain Flask model server as the book's chapter 8 writes one ("Building ML Pipelines",
"A simple model server"): load the model at import, one route, preprocess and predict the
posted complaint, answer with ``json.dumps``, run on Flask's own server.

The book posts a form field to a Keras model behind its own ``preprocess``; here the body is the
raw complaint row as JSON and the scikit-learn Pipeline does the preprocessing.

    python flask_app.py MODEL.joblib PORT
"""

import json
import sys

import joblib
import pandas as pd
from flask import Flask, request

model = joblib.load(sys.argv[1])
app = Flask(__name__)


@app.route("/classify", methods=["POST"])
def classify():
    complaint_data = request.get_json()
    prediction = model.predict_proba(pd.DataFrame([complaint_data]))
    return json.dumps({"score": float(prediction[0, 1])})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]))
