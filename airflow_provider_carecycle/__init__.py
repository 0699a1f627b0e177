"""Apache Airflow provider for the careCycle API.

Importing this package is cheap: it imports nothing from Airflow. Hooks, operators, sensors and triggers live in
their own sub-packages and are imported only where a DAG uses them.
"""

__version__ = "0.2.0"
