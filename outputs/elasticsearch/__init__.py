"""The Elasticsearch / OpenSearch output: ``config`` (the keys), ``output`` (chunks -> ``_bulk``
requests, every item accounted for), ``transport`` (hosts, authentication, TLS, gzip) and
``bulk`` (bulk bodies and their answers, pure functions over bytes). See docs/elasticsearch.md.

Importing the package does not import aiohttp: the transport imports it when it is built.
"""

from outputs.elasticsearch.config import ElasticsearchConfig, OpenSearchConfig
from outputs.elasticsearch.output import ElasticsearchOutput

__all__ = ["ElasticsearchConfig", "ElasticsearchOutput", "OpenSearchConfig"]
