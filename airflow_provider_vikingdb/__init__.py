"""Apache Airflow provider for VikingDB, Volcengine's managed vector database."""

__version__ = "0.1.0"
