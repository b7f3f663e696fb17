"""Data: what a dataset is and how its pixels reach a model.

The one decode function (``images``), the scanner and its index (``dataset``, ``dataset_report``),
splits, the ``tf.data`` pipeline and augmentation, thumbnails, zip archives and the dataset writers
(Fashion-MNIST, synthetic photos). May import the root modules of ``imgclf_core`` (``config``,
``fileio``, ``parallel``, ``settings``, ``tf_quiet``) and nothing else of ours: no models, no
training, no inspection, no export.
"""
