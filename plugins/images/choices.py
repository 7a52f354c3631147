"""The images domain's choices of pixel likelihood and binarisation, apart from
:mod:`polyvae.plugins.images.likelihoods` (which implements them with torch) so that the domain's
options can name them without importing torch."""

LIKELIHOODS = ("bernoulli", "gaussian", "logistic")
BINARIZE = ("none", "dynamic", "threshold")
