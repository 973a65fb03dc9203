"""SeqIO tasks of recjax (the data/task layer; imports TensorFlow).

Importing this package registers the stable TIGER tasks
(`tiger_movielens_100k`, `tiger_amazon_office`, `tiger_amazon_beauty`)
without reading any file; see `tasks.tiger`.
"""

import importlib as _importlib
import sys as _sys

from recjax import quiet

if __name__ == "tasks":
  # The old top-level name (a checkout): the one package is recjax.tasks,
  # so that no module is imported twice under two names.
  from recjax import deprecation as _deprecation

  _deprecation.warn_moved("the package tasks", "recjax.tasks", stacklevel=2)
  _sys.modules["tasks"] = _importlib.import_module("recjax.tasks")
  for _name in _deprecation.TASK_SUBMODULES:
    _sys.modules[f"tasks.{_name}"] = _importlib.import_module(
        f"recjax.tasks.{_name}")
else:
  # TensorFlow's import-time C++ logs go to /dev/null (recjax.quiet).
  quiet.load_task_layer()

from recjax.tasks import preprocessors  # noqa: E402
from recjax.tasks import tiger  # noqa: E402
from recjax.tasks import vocabulary  # noqa: E402
from recjax.tasks.preprocessors import RecFeatureConverter  # noqa: E402
from recjax.tasks.tiger import check_feature_lengths  # noqa: E402
from recjax.tasks.tiger import default_feature_lengths  # noqa: E402
from recjax.tasks.tiger import feature_converter  # noqa: E402
from recjax.tasks.tiger import get_task  # noqa: E402
from recjax.tasks.tiger import get_vocabulary  # noqa: E402
from recjax.tasks.tiger import register_tiger_task  # noqa: E402
from recjax.tasks.vocabulary import SemanticIdVocabulary  # noqa: E402

__all__ = [
    "RecFeatureConverter", "SemanticIdVocabulary", "check_feature_lengths",
    "default_feature_lengths", "feature_converter", "get_task",
    "get_vocabulary", "preprocessors", "register_tiger_task", "tiger",
    "vocabulary",
]

tiger.register_default_tasks()
