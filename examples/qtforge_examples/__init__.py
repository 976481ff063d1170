"""Example plugins for qtforge, advertised in the ``qtforge.plugins`` entry-point group.

Installing this distribution (``pip install -e ./examples``) is all it takes for a
``PluginOrchestrator()`` to find them by id:

=================  ===========================================  ==================
plugin id          class                                        method
=================  ===========================================  ==================
csv_loader         `tabular.CsvLoader`                          ``load_file``
data_validator     `tabular.DataValidator`                      ``validate``
data_transformer   `tabular.DataTransformer`                    ``transform``
csv_writer         `tabular.CsvWriter`                          ``save_file``
image_processor    `media.ImageProcessor`                       ``process_batch``
video_processor    `media.VideoProcessor`                       ``process_batch``
audio_processor    `media.AudioProcessor` (async)               ``process_batch``
aggregator         `media.Aggregator`                           ``combine_results``
http_client        `web.HttpClient`                             ``fetch``
cache_reader       `web.CacheReader`                            ``read_cached``
=================  ===========================================  ==================

`local_api.LocalApi` is a small local HTTP server that stands in for the internet.
"""

from .media import Aggregator as Aggregator
from .media import AudioProcessor as AudioProcessor
from .media import ImageProcessor as ImageProcessor
from .media import VideoProcessor as VideoProcessor
from .tabular import CsvLoader as CsvLoader
from .tabular import CsvWriter as CsvWriter
from .tabular import DataTransformer as DataTransformer
from .tabular import DataValidator as DataValidator
from .web import CacheReader as CacheReader
from .web import HttpClient as HttpClient

__all__ = [
    "Aggregator",
    "AudioProcessor",
    "CacheReader",
    "CsvLoader",
    "CsvWriter",
    "DataTransformer",
    "DataValidator",
    "HttpClient",
    "ImageProcessor",
    "VideoProcessor",
]
