"""dnnstress: stress tests for deep feature vectors (Carvalho et al., ICIP 2016).

Deep features are stressed by dropping dimensions (DR-1 random, DR-2 PCA), by quantizing
their values (Q-1 one global range, Q-2 a range per dimension) or both (FC), then scored
with a linear SVM.  ``dnnstress.stress`` holds the stressors; they take numpy or CuPy
arrays and return arrays of the same kind.  Importing this package never imports CuPy.
"""

__version__ = "0.1.0"
