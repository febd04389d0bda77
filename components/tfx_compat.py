"""The one place that imports the TFX stack in the order it needs.

TFDV 1.16 (the newest TFDV whose wheel loads on Debian 12) imports
`tfx_bsl.arrow.sql_util`, which tfx-bsl 1.21 no longer ships; tfx 1.21's
`tfx/components/__init__.py` registers a stand-in for it. So `tfx.components` must be
imported before anything imports TFDV (TFX's Trainer executor does). Every module of
this project that needs TFX imports it from here:

    from components.tfx_compat import tfx
"""
import logging
import os
import warnings

# Quiet by default: users want component progress, not thousands of TF/absl lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"(tensorflow|tfx|apache_beam|tensorflow_transform|tensorflow_model_analysis|keras).*")

import tfx.components  # noqa: E402,F401  (must come before TFDV; see module docstring)
from tfx import v1 as tfx  # noqa: E402

logging.getLogger("tensorflow").setLevel(logging.ERROR)


def check_stack() -> None:
    """Import the whole stack once and print the versions (run by `make setup`)."""
    import ml_metadata
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    import tensorflow_model_analysis as tfma
    import tensorflow_transform as tft
    import keras
    from tfx import version

    print(
        f"[setup] ok: tfx {version.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"tft {tft.__version__}, tfma {tfma.__version__}, tfdv {tfdv.__version__}, "
        f"ml-metadata {ml_metadata.__version__}"
    )
