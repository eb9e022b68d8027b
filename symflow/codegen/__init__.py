"""Stage 3 of the pipeline: one code generator, numpy and mpmath backends."""

from symflow.codegen.render import (  # noqa: F401
    BACKENDS,
    HEADER,
    render_model_module,
    render_scalar_module,
    render_sgd_function,
)
