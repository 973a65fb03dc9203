"""SeqIO tasks of recjax (the data/task layer; imports TensorFlow).

Importing this package registers the stable TIGER tasks
(`tiger_movielens_100k`, `tiger_amazon_office`, `tiger_amazon_beauty`)
without reading any file; see `tasks.tiger`.
"""

from tasks import preprocessors
from tasks import tiger
from tasks import vocabulary
from tasks.preprocessors import RecFeatureConverter
from tasks.tiger import check_feature_lengths
from tasks.tiger import default_feature_lengths
from tasks.tiger import feature_converter
from tasks.tiger import get_task
from tasks.tiger import get_vocabulary
from tasks.tiger import register_tiger_task
from tasks.vocabulary import SemanticIdVocabulary

__all__ = [
    "RecFeatureConverter", "SemanticIdVocabulary", "check_feature_lengths",
    "default_feature_lengths", "feature_converter", "get_task",
    "get_vocabulary", "preprocessors", "register_tiger_task", "tiger",
    "vocabulary",
]

tiger.register_default_tasks()
