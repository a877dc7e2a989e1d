"""Running an export: the host build (edgekit.api), the firmware in QEMU (emulate.py) over
the serial links (link.py), the references it is held to (reference.py: TFLite; intref.py:
edgekit's integer reference) and the checks built on them (verify.py, trace.py, evaluate.py)."""
