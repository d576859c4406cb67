"""Models and training (protocol step 2): the architectures, one split x regime trained
with a snapshot every epoch, label noise and adversarial training. May import
``advfit.runtime`` and ``advfit.attacks`` (adversarial training crafts PGD).

``architectures`` (the registry: LeNet-5, Inception v3, the residual networks,
a user's builder; ``model.params``, and ``model.normalization`` as the model's
first layer), ``resnets`` (PreActResNet18, WideResNet, ResNet-20), ``recipes``
(learning-rate schedules, weight decay, Nesterov momentum, augmentation),
``training`` (``train_regime``: resumable, bit-identical), ``label_noise`` (the
labels a regime trains on), ``adversarial_training`` (PGD-AT, Madry et al. 2018).
"""
