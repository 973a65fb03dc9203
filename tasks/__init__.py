"""SeqIO tasks of recjax (the data/task layer; imports TensorFlow).

Importing this package registers the stable TIGER tasks
(`tiger_movielens_100k`, `tiger_amazon_office`, `tiger_amazon_beauty`)
without reading any file; see `tasks.tiger`.
"""

from recjax import quiet

# TensorFlow's import-time C++ logs go to /dev/null (recjax.quiet).
quiet.load_task_layer()

from tasks import preprocessors  # noqa: E402
from tasks import tiger  # noqa: E402
from tasks import vocabulary  # noqa: E402
from tasks.preprocessors import RecFeatureConverter  # noqa: E402
from tasks.tiger import check_feature_lengths  # noqa: E402
from tasks.tiger import default_feature_lengths  # noqa: E402
from tasks.tiger import feature_converter  # noqa: E402
from tasks.tiger import get_task  # noqa: E402
from tasks.tiger import get_vocabulary  # noqa: E402
from tasks.tiger import register_tiger_task  # noqa: E402
from tasks.vocabulary import SemanticIdVocabulary  # noqa: E402

__all__ = [
    "RecFeatureConverter", "SemanticIdVocabulary", "check_feature_lengths",
    "default_feature_lengths", "feature_converter", "get_task",
    "get_vocabulary", "preprocessors", "register_tiger_task", "tiger",
    "vocabulary",
]

tiger.register_default_tasks()
