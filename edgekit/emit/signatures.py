"""Per-exit signatures in model.tflite, for phones: a model with early exits exported with
--budgets gets one extra subgraph and signature per early exit, `exit<k>` (k in exit order,
edgekit.lower.exits), computing only the operators that exit needs, so an app on low battery can
call the cheaper one through LiteRT's signature runner.

Each exit's subgraph is cut from the full model's subgraph 0: the same operators (in the same
order), tensors and quantization, the weights shared (the same buffers), so its output equals
output k of the full model byte for byte (`edgekit verify` checks it with LiteRT). Subgraph 0 and
its signature stay as the converter wrote them: edgekit compiles subgraph 0
(edgekit.frontend.tflite accepts further subgraphs that are only signatures).
"""
from __future__ import annotations

import copy

import numpy as np


def exit_signature_key(k: int) -> str:
    return f"exit{k}"


def add_exit_signatures(tflite: bytes, exit_outputs: list[int]) -> bytes:
    """`tflite` with a signature `exit<k>` for each early exit: exit_outputs[k] is the index (in
    subgraph 0's outputs) of exit k's output; the last entry, the final classifier, gets none."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite, 0))
    main = model.subgraphs[0]
    producer = {}
    for i, op in enumerate(main.operators or []):
        for t in op.outputs if op.outputs is not None else []:
            producer[int(t)] = i
    base_sig = next((s for s in model.signatureDefs or [] if s.subgraphIndex == 0), None)
    input_name = (base_sig.inputs[0].name if base_sig is not None and base_sig.inputs else b"input")
    signatures = list(model.signatureDefs or [])
    for k, out_index in enumerate(exit_outputs[:-1]):
        target = int(main.outputs[out_index])
        needed, todo = set(), [target]
        while todo:
            t = todo.pop()
            i = producer.get(t)
            if i is None or i in needed:
                continue
            needed.add(i)
            todo.extend(int(u) for u in main.operators[i].inputs if u >= 0)
        ops = [main.operators[i] for i in sorted(needed)]
        used = sorted({int(main.inputs[0])} | {int(u) for op in ops for u in list(op.inputs) + list(op.outputs)
                                                 if u >= 0})
        remap = {old: new for new, old in enumerate(used)}
        sub = schema.SubGraphT()
        sub.tensors = [copy.deepcopy(main.tensors[t]) for t in used]
        sub.inputs = np.array([remap[int(main.inputs[0])]], np.int32)
        sub.outputs = np.array([remap[target]], np.int32)
        sub.operators = []
        for op in ops:
            new = copy.deepcopy(op)
            new.inputs = np.array([remap[int(u)] if u >= 0 else -1 for u in op.inputs], np.int32)
            new.outputs = np.array([remap[int(u)] for u in op.outputs], np.int32)
            if new.intermediates is not None:
                new.intermediates = np.array([remap.get(int(u), -1) for u in op.intermediates], np.int32)
            sub.operators.append(new)
        sub.name = exit_signature_key(k).encode()
        model.subgraphs.append(sub)
        sig = schema.SignatureDefT()
        sig.signatureKey = exit_signature_key(k).encode()
        sig.subgraphIndex = len(model.subgraphs) - 1
        sig.inputs = [_tensor_map(schema, input_name, remap[int(main.inputs[0])])]
        sig.outputs = [_tensor_map(schema, b"output_0", remap[target])]
        signatures.append(sig)
    model.signatureDefs = signatures
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _tensor_map(schema, name: bytes, index: int):
    m = schema.TensorMapT()
    m.name = name
    m.tensorIndex = index
    return m


def exit_signatures(tflite: bytes) -> list[str]:
    """The exit<k> signature keys a model.tflite has, in exit order."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.Model.GetRootAs(tflite, 0)
    keys = [model.SignatureDefs(i).SignatureKey().decode() for i in range(model.SignatureDefsLength())]
    return sorted((k for k in keys if k.startswith("exit") and k[4:].isdigit()), key=lambda k: int(k[4:]))
