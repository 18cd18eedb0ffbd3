"""Text rendering of predictions and the logic of the ``copur predict`` command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from copur_client.errors import CopurClientError
from copur_client.grpc_client import GrpcFusionClient, TlsPaths
from copur_client.http import FusionClient
from copur_client.wire import Certificate, Prediction, one_line

__all__ = ["certificate_summary", "predict_command", "predictions_json", "predictions_table"]

_HEADERS = ("sample", "label", "p", "flagged", "missing", "certificate", "party scores")
_RIGHT = {0, 2}  # numeric columns, right-aligned


def _ints(values: list[int]) -> str:
    return ",".join(str(v) for v in values) or "-"


def certificate_summary(cert: Certificate | None) -> str:
    """``vote lying<=1 label=3`` (certified against that many lying parties), ``smoothing r=0.412
    label=3``, or ``-`` without a certificate."""
    if cert is None:
        return "-"
    parts = [cert.kind]
    if cert.certified_parties >= 0:
        parts.append(f"lying<={cert.certified_parties}")
    if cert.radius > 0 or cert.kind == "smoothing":
        parts.append(f"r={cert.radius:.3g}")
    if cert.label >= 0:
        parts.append(f"label={cert.label}")
    return " ".join(parts)


def predictions_table(preds: list[Prediction], class_names: list[str] | None = None) -> str:
    """A fixed-width table, one row per prediction in the given order, with a header and a
    summary line."""
    rows: list[tuple[str, ...]] = []
    for p in preds:
        label = str(p.label)
        if class_names is not None and 0 <= p.label < len(class_names):
            label = f"{p.label} ({class_names[p.label]})"
        top = f"{max(p.probabilities):.3f}" if p.probabilities else "-"
        scores = " ".join(f"{s:.2f}" for s in p.party_scores) or "-"
        rows.append(
            (
                str(p.sample_id),
                label,
                top,
                _ints(p.flagged_parties),
                _ints(p.missing_parties),
                certificate_summary(p.certificate),
                scores,
            )
        )
    widths = [max(len(r[c]) for r in [_HEADERS, *rows]) for c in range(len(_HEADERS))]

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        out = [cell.rjust(w) if c in _RIGHT else cell.ljust(w) for c, (cell, w) in pairs]
        return "  ".join(out).rstrip()

    flagged = sum(1 for p in preds if p.flagged_parties)
    defenses = sorted({p.defense for p in preds})
    summary = f"{len(preds)} prediction(s), {flagged} with flagged parties"
    if defenses:
        summary += f", defense {', '.join(defenses)}"
    return "\n".join(
        [line(_HEADERS), line(tuple("-" * w for w in widths)), *map(line, rows), summary]
    )


def predictions_json(preds: list[Prediction]) -> dict[str, Any]:
    """``{"predictions": [...]}`` in the shape ``POST /v1/predict`` answers."""
    return {"predictions": [dataclasses.asdict(p) for p in preds]}


def predict_command(
    url: str,
    ids: list[int],
    defense: str | None,
    certify: bool,
    as_json: bool,
    grpc_target: str | None,
    tls: TlsPaths | None = None,
    *,
    api_key: str | None = None,
    ca_file: str | Path | None = None,
) -> tuple[int, str]:
    """Predict ``ids`` over HTTP at ``url`` (or over gRPC at ``grpc_target`` when given, mTLS
    with ``tls``).

    Returns (exit code, text to print): 0 and the table (or the JSON answer when ``as_json``), or
    2 and one line ``error: ...`` when the call fails. ``api_key``: the Bearer key (default
    ``$COPUR_API_KEY``); ``ca_file``: the CA that verifies an ``https://`` ``url`` (default
    ``$COPUR_CA_FILE``, else the system's trust store)."""
    try:
        if grpc_target:
            with GrpcFusionClient(grpc_target, tls=tls, api_key=api_key) as grpc_client:
                preds = grpc_client.predict(ids, defense=defense, certify=certify)
            return 0, (json.dumps(predictions_json(preds)) if as_json else predictions_table(preds))
        with FusionClient(
            url, api_key=api_key, retries=2, ca_file=ca_file
        ) as client:  # a person is waiting: fail fast
            if as_json:
                return 0, json.dumps(client.predict_json(ids, defense=defense, certify=certify))
            preds = client.predict(ids, defense=defense, certify=certify)
        return 0, predictions_table(preds)
    except CopurClientError as exc:
        return 2, f"error: {one_line(str(exc))}"
