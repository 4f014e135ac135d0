"""nnsrm pipeline plumbing: results layout, atomic writes, job runner, command lines.

The science lives in :mod:`qmvpa`; the models and data in the top-level
``models.py``, ``resnet.py``, ``data_loader.py`` and ``config.py``. This
package holds what the three stage scripts share.
"""
