"""Running a bucket's notebooks: the DAG (``graph``), content keys (``cache``), the bucket lock
(``lock``), papermill execution in worker processes (``execute``) and the scheduler (``runner``).
The command line is ``dpnb run`` (``dpnb/commands/run.py``)."""
