"""The model zoo: `create_model(name, input_spec, num_classes, **hparams)`.

Importing this package registers every family (one module each). See docs/models.md.

```python
from models import create_model, list_models

model = create_model("digits_cnn", (8, 8, 1), num_classes=10)
```
"""
from models.registry import create_model, list_models, register_model

# Imported for their @register_model side effect.
from models import densenet, lenet, mobilenet, resnet, rnn, simple_cnn, vgg  # noqa: E402,F401
from models.rnn import TOKEN_MODELS  # noqa: E402  (models that read token ids, for text data)

__all__ = ["TOKEN_MODELS", "create_model", "list_models", "register_model"]
