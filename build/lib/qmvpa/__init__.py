"""qmvpa: the analysis library of nnsrm (SRM alignment, RSA, statistics, plotting).

Convention everywhere in this package: activity matrices are **units × images**
(BrainIAK's voxels × samples). Activation files on disk are images × units; the
callers transpose once, at the boundary. This package never imports Keras, the
pipeline scripts or ``config.py``, never touches file paths of the pipeline and
never prints (it logs).
"""
