"""edgekit: compile trained Keras / TFLite models into bit-exact C for microcontrollers.

    import edgekit
    m = edgekit.compile("model.h5", target="host", calib="calib.npy")   # export + build host C
    y = m.predict(x)          # int8 outputs of the generated C, batch [N, *output_shape]
"""
from edgekit.version import __version__  # noqa: F401

from edgekit.errors import EdgekitError  # noqa: E402,F401
from edgekit.api import compile, load  # noqa: E402,F401,A004
