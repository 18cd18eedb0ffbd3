"""Calls to a fusion center through ``tritonclient.grpc``, run in a process of its own:
tritonclient's stubs define the same ``inference.*`` protobuf names as the fusion center's, and
one process's default descriptor pool refuses to hold both (TypeError: duplicate symbol). The
test process serves the fusion center; this script is the client.

Reads a JSON plan on stdin: ``{"url": "host:port", "key": str | null, "calls": [...]}`` where each
call is ``{"op": ..., ...}``; prints one JSON list with a result per call: ``{"ok": true, "value":
...}`` or ``{"ok": false, "status": "StatusCode.X", "message": "..."}``. Ops: ``live``, ``ready``,
``model_ready`` (``model``), ``server_metadata``, ``model_metadata`` (``model``), ``infer``
(``model``, ``ids``, ``datatype``, ``shape`` (default [N]), ``outputs`` (names or null),
``parameters``, ``id``, ``auth`` (default true: send the key)), ``fields`` (``messages``: the
fields of tritonclient's messages of those names, nested ones as ``Outer.Inner``)."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException


def _fields(name: str) -> list[list[Any]]:
    outer, _, inner = name.partition(".")
    message = service_pb2.DESCRIPTOR.message_types_by_name[outer]
    if inner:
        message = message.nested_types_by_name[inner]
    return [[f.name, f.number, f.type, f.is_repeated] for f in message.fields]


def _infer(client: tg.InferenceServerClient, call: dict[str, Any], headers: Any) -> Any:
    ids = np.asarray(call["ids"]).astype(np.int64)
    datatype = call.get("datatype", "INT64")
    shape = call.get("shape") or [len(ids)]
    tensor = tg.InferInput("sample_ids", shape, datatype)
    tensor.set_data_from_numpy(ids.astype(tg.triton_to_np_dtype(datatype)).reshape(shape))
    outputs = (
        None
        if call.get("outputs") is None
        else [tg.InferRequestedOutput(name) for name in call["outputs"]]
    )
    result = client.infer(
        call.get("model", "copur"),
        [tensor],
        outputs=outputs,
        request_id=call.get("id", ""),
        parameters=call.get("parameters"),
        headers=headers if call.get("auth", True) else None,
    )
    response = result.get_response()
    return {
        "model_version": response.model_version,
        "id": response.id,
        "parameters": {
            k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in response.parameters.items()
        },
        "order": [o.name for o in response.outputs],
        "outputs": {
            o.name: {
                "datatype": o.datatype,
                "shape": list(o.shape),
                "value": result.as_numpy(o.name).tolist(),
            }
            for o in response.outputs
        },
    }


def _call(client: tg.InferenceServerClient, call: dict[str, Any], headers: Any) -> Any:
    op = call["op"]
    if op == "fields":
        return {name: _fields(name) for name in call["messages"]}
    if op == "live":
        return client.is_server_live(headers=headers)
    if op == "ready":
        return client.is_server_ready(headers=headers)
    if op == "model_ready":
        return client.is_model_ready(call["model"], headers=headers)
    if op == "server_metadata":
        return client.get_server_metadata(headers=headers, as_json=True)
    if op == "model_metadata":
        return client.get_model_metadata(call["model"], headers=headers, as_json=True)
    if op == "infer":
        return _infer(client, call, headers)
    raise ValueError(op)


def main() -> None:
    plan = json.load(sys.stdin)
    headers = {"authorization": f"Bearer {plan['key']}"} if plan.get("key") else None
    client = tg.InferenceServerClient(plan["url"])
    results = []
    for call in plan["calls"]:
        try:
            results.append({"ok": True, "value": _call(client, call, headers)})
        except InferenceServerException as exc:
            results.append({"ok": False, "status": exc.status(), "message": exc.message()})
    client.close()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
