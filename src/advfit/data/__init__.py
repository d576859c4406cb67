"""Data (protocol step 1): dataset sources and checksums, file formats, the prepared
pooled arrays and the splits. May import ``advfit.runtime`` only.

``sources`` (download, verify, unpack), ``formats`` (readers of MNIST idx,
CIFAR pickles, STL-10 binaries, class folders, npz), ``datasets`` (the
prepared ``data.npz`` and ``PooledData``), ``splits`` (k-fold / shuffle splits).
"""
