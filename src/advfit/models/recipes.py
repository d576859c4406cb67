"""Training recipes of the field (issue 24): learning-rate schedules, weight
decay, Nesterov momentum and data augmentation, the regime keys
``lr_schedule``, ``weight_decay`` (with ``weight_decay_mode`` and
``weight_decay_scope``), ``nesterov`` and ``augmentation``.

Each key is optional; a regime without any of them trains exactly as before
(same optimizer, same loop, same bytes). Together they express Rice et al.
2020's recipe (locuslab/robust_overfitting ``train_cifar.py``): SGD momentum
0.9, weight decay 5e-4, lr 0.1 divided by 10 at 50 % and by 100 at 75 % of
the epochs, updated every iteration, random crop with padding 4 and
horizontal flips, batch 128.

Everything random or time-dependent is a pure function of the job's seed, the
epoch and the batch index, so a job killed after epoch k resumes
bit-identically:

- :func:`learning_rate` gives the rate of global step ``iteration`` (0-based,
  counted over the whole run); the training loops assign it to the
  optimizer's learning-rate variable before every step (what Rice et al.
  do with ``opt.param_groups[0].update(lr=...)``), computing the step from the
  epoch and the batch, never from saved state.
- :func:`augment` draws batch b of epoch e's crops, flips and cutouts from
  ``numpy.random.default_rng([augmentation_seed(seed, e), b])``.
- Weight decay is part of the optimizer (:func:`coupled_optimizer_class`,
  Keras' own ``weight_decay`` for the decoupled mode), whose variables the
  training state already saves.

:func:`recipe_problems` checks the keys against each other and against the
data's image size before any job runs, naming the offending key.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from advfit.runtime.seeds import job_seed

RECIPE_KEYS = ("lr_schedule", "weight_decay", "weight_decay_mode", "weight_decay_scope",
               "nesterov", "augmentation")
SCHEDULES = ("constant", "piecewise", "cosine")
UNITS = ("fraction", "epoch")
DECAY_MODES = ("coupled", "decoupled")
DECAY_SCOPES = ("kernels", "all")
PADDING_MODES = ("constant", "reflect")
FLIPS = ("horizontal",)


# ---------------------------------------------------------------- the spec

def recipe_spec_problems(where: str, regime: dict, image_shape=None) -> list[str]:
    """The problems of ``regime``'s recipe keys, each naming ``where.key``
    (``where`` is e.g. ``regimes.robust``); image sizes are checked when
    ``image_shape`` (H, W, C) is given."""
    problems: list[str] = []

    def bad(key: str, message: str) -> None:
        problems.append(f"config key '{where}.{key}': {message}")

    epochs = regime.get("epochs")
    epochs = epochs if _is_number(epochs) and epochs >= 1 else None
    if "lr_schedule" in regime:
        problems += _schedule_problems(f"{where}.lr_schedule", regime["lr_schedule"], epochs)
    if "weight_decay" in regime:
        decay = regime["weight_decay"]
        if not _is_number(decay) or not math.isfinite(decay) or decay < 0:
            bad("weight_decay", f"{decay!r} is not a finite number >= 0")
    for key, allowed in (("weight_decay_mode", DECAY_MODES), ("weight_decay_scope", DECAY_SCOPES)):
        if key in regime:
            if regime[key] not in allowed:
                bad(key, f"{regime[key]!r} is not one of {list(allowed)}")
            elif "weight_decay" not in regime:
                bad(key, "given without weight_decay, it would do nothing")
    if "nesterov" in regime:
        if not isinstance(regime["nesterov"], bool):
            bad("nesterov", f"{regime['nesterov']!r} is not true or false")
        elif regime.get("optimizer") != "sgd":
            bad("nesterov", f"only the sgd optimizer takes nesterov, this regime uses "
                            f"{regime.get('optimizer')}")
        elif regime["nesterov"] and not regime.get("momentum"):
            bad("nesterov", "Nesterov momentum needs a momentum > 0 (regime key momentum)")
    if "augmentation" in regime:
        problems += _augmentation_problems(f"{where}.augmentation", regime["augmentation"],
                                           image_shape)
    return problems


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _schedule_problems(where: str, spec, epochs) -> list[str]:
    problems: list[str] = []

    def bad(key: str, message: str) -> None:
        problems.append(f"config key '{where}{'.' + key if key else ''}': {message}")

    if not isinstance(spec, dict):
        bad("", f"{spec!r} is not a mapping with a type (constant, piecewise or cosine)")
        return problems
    kind = spec.get("type")
    if kind not in SCHEDULES:
        bad("type", f"{kind!r} is not one of {list(SCHEDULES)}")
        return problems
    allowed = {"type", "warmup_epochs", *{"piecewise": ("unit", "boundaries", "factors"),
                                          "cosine": ("final_factor",),
                                          "constant": ()}[kind]}
    for key in sorted(set(spec) - allowed):
        known = key in {"unit", "boundaries", "factors", "final_factor"}
        bad(key, f"does not apply to a {kind} schedule" if known else "unknown key")
    warmup = spec.get("warmup_epochs", 0)
    if not _is_number(warmup) or not math.isfinite(warmup) or warmup < 0:
        bad("warmup_epochs", f"{warmup!r} is not a finite number >= 0")
    elif epochs is not None and warmup >= epochs:
        bad("warmup_epochs", f"{warmup} is not below the regime's {epochs} epochs")
    if kind == "cosine" and "final_factor" in spec:
        final = spec["final_factor"]
        if not _is_number(final) or not 0 <= final < 1:
            bad("final_factor", f"{final!r} is not in [0, 1)")
    if kind != "piecewise":
        return problems
    for key in ("unit", "boundaries", "factors"):
        if key not in spec:
            bad(key, "required by a piecewise schedule but missing")
    unit, boundaries, factors = spec.get("unit"), spec.get("boundaries"), spec.get("factors")
    if "unit" in spec and unit not in UNITS:
        bad("unit", f"{unit!r} is not one of {list(UNITS)} (boundaries as fractions of the "
                    "run's epochs, or as epochs)")
    numbers = lambda v: (isinstance(v, list) and v  # noqa: E731
                         and all(_is_number(x) and math.isfinite(x) for x in v))
    if "boundaries" in spec and not numbers(boundaries):
        bad("boundaries", f"{boundaries!r} is not a non-empty list of numbers")
    elif "boundaries" in spec:
        if any(later <= earlier for earlier, later in zip(boundaries, boundaries[1:])):
            bad("boundaries", f"{boundaries} must be strictly increasing")
        if unit == "fraction" and not all(0 < b < 1 for b in boundaries):
            bad("boundaries", f"{boundaries}: with unit fraction every boundary is a fraction "
                              "of the run's epochs, in (0, 1)")
        if unit == "epoch":
            top = epochs if epochs is not None else math.inf
            if not all(0 < b < top for b in boundaries):
                bad("boundaries", f"{boundaries}: with unit epoch every boundary is a number "
                                  f"of epochs in (0, {epochs}) (the regime's epochs)")
    if "factors" in spec and not numbers(factors):
        bad("factors", f"{factors!r} is not a non-empty list of numbers")
    elif "factors" in spec:
        if not all(f > 0 for f in factors):
            bad("factors", f"{factors}: every factor must be > 0 (a multiple of learning_rate)")
        if numbers(boundaries) and len(factors) != len(boundaries):
            bad("factors", f"{len(factors)} factors for {len(boundaries)} boundaries: one "
                           "factor per boundary")
    return problems


def _augmentation_problems(where: str, spec, image_shape) -> list[str]:
    problems: list[str] = []

    def bad(key: str, message: str) -> None:
        problems.append(f"config key '{where}{'.' + key if key else ''}': {message}")

    if not isinstance(spec, dict) or not spec:
        bad("", f"{spec!r} is not a mapping of crop, flip and/or cutout")
        return problems
    for key in sorted(set(spec) - {"crop", "flip", "cutout"}):
        bad(key, "unknown key (allowed here: crop, cutout, flip)")
    size = None if image_shape is None else min(int(image_shape[0]), int(image_shape[1]))
    shape = "" if image_shape is None else f"{image_shape[0]}x{image_shape[1]}"
    if "crop" in spec:
        crop = spec["crop"]
        if not isinstance(crop, dict) or "padding" not in crop:
            bad("crop", f"{crop!r} is not a mapping with a padding, e.g. {{padding: 4}}")
        else:
            for key in sorted(set(crop) - {"padding", "padding_mode"}):
                bad(f"crop.{key}", "unknown key (allowed here: padding, padding_mode)")
            padding = crop["padding"]
            if not isinstance(padding, int) or isinstance(padding, bool) or padding < 1:
                bad("crop.padding", f"{padding!r} is not an integer >= 1")
            elif size is not None and padding >= size:
                bad("crop.padding", f"{padding} pixels of padding is not below the image size "
                                    f"of the data ({shape})")
            if crop.get("padding_mode", "constant") not in PADDING_MODES:
                bad("crop.padding_mode", f"{crop['padding_mode']!r} is not one of "
                                         f"{list(PADDING_MODES)}")
    if "flip" in spec and spec["flip"] not in FLIPS:
        bad("flip", f"{spec['flip']!r} is not one of {list(FLIPS)}")
    if "cutout" in spec:
        cutout = spec["cutout"]
        if not isinstance(cutout, dict) or "size" not in cutout:
            bad("cutout", f"{cutout!r} is not a mapping with a size, e.g. {{size: 16}}")
        else:
            for key in sorted(set(cutout) - {"size"}):
                bad(f"cutout.{key}", "unknown key (allowed here: size)")
            side = cutout["size"]
            if not isinstance(side, int) or isinstance(side, bool) or side < 1:
                bad("cutout.size", f"{side!r} is not an integer >= 1")
            elif size is not None and side > size:
                bad("cutout.size", f"a {side}x{side} square does not fit in the data's "
                                   f"{shape} images")
    return problems


def recipe_problems(config: dict, info) -> list[str]:
    """Every regime's recipe problems (``config``'s regimes, ``info.image_shape``):
    what :func:`advfit.config.check_config` adds to the schema's checks."""
    return [problem for name, regime in config["regimes"].items()
            for problem in recipe_spec_problems(f"regimes.{name}", regime, info.image_shape)]


def resolve_recipe(regime: dict, image_shape=None) -> dict:
    """``regime``'s recipe with its defaults filled in; ValueError naming the
    first bad key (for regimes built by hand: the config check refuses them first).

    Returns ``lr_schedule`` (None without), ``augmentation`` (None without;
    else ``crop``, ``flip`` and ``cutout``, each None when absent),
    ``weight_decay`` (0.0 without), ``weight_decay_mode``, ``weight_decay_scope``
    and ``nesterov``.
    """
    problems = recipe_spec_problems("regime", regime, image_shape)
    if problems:
        key, message = problems[0].removeprefix("config key '").split("': ", 1)
        raise ValueError(f"{key}: {message}")
    schedule = regime.get("lr_schedule")
    if schedule is not None:
        schedule = {"type": schedule["type"],
                    "warmup_epochs": float(schedule.get("warmup_epochs", 0))}
        raw = regime["lr_schedule"]
        if raw["type"] == "piecewise":
            schedule.update(unit=raw["unit"], boundaries=[float(b) for b in raw["boundaries"]],
                            factors=[float(f) for f in raw["factors"]])
        elif raw["type"] == "cosine":
            schedule["final_factor"] = float(raw.get("final_factor", 0.0))
    augmentation = regime.get("augmentation")
    if augmentation is not None:
        crop, cutout = augmentation.get("crop"), augmentation.get("cutout")
        augmentation = {
            "crop": None if crop is None else {
                "padding": int(crop["padding"]),
                "padding_mode": crop.get("padding_mode", "constant")},
            "flip": augmentation.get("flip"),
            "cutout": None if cutout is None else {"size": int(cutout["size"])},
        }
    return {"lr_schedule": schedule, "augmentation": augmentation,
            "weight_decay": float(regime.get("weight_decay", 0.0)),
            "weight_decay_mode": regime.get("weight_decay_mode", "coupled"),
            "weight_decay_scope": regime.get("weight_decay_scope", "kernels"),
            "nesterov": bool(regime.get("nesterov", False))}


def depends_on_epochs(schedule: dict | None) -> bool:
    """Whether the rate of a step depends on the run's total number of epochs
    (then a longer run does not continue a shorter one)."""
    return bool(schedule) and (schedule["type"] == "cosine"
                               or (schedule["type"] == "piecewise"
                                   and schedule["unit"] == "fraction"))


def fingerprint_part(regime: dict) -> dict:
    """What the regime's recipe adds to the resume fingerprint: nothing for a
    regime without recipe keys (so existing partial runs stay resumable),
    else the resolved recipe (defaults written out or implicit: the same run),
    with ``epochs`` when the schedule depends on it."""
    if not any(key in regime for key in RECIPE_KEYS):
        return {}
    recipe = resolve_recipe(regime)
    part = {}
    if recipe["lr_schedule"] is not None:
        part["lr_schedule"] = recipe["lr_schedule"]
        if depends_on_epochs(recipe["lr_schedule"]):
            part["schedule_epochs"] = int(regime["epochs"])
    if recipe["augmentation"] is not None:
        part["augmentation"] = recipe["augmentation"]
    if recipe["weight_decay"] > 0:
        part["weight_decay"] = {key: recipe[key] for key in
                                ("weight_decay", "weight_decay_mode", "weight_decay_scope")}
    if recipe["nesterov"]:
        part["nesterov"] = True
    return part


# ---------------------------------------------------------------- learning rate

def learning_rate(spec: dict | None, base_lr: float, iteration: int, iterations_per_epoch: int,
                  epochs: int) -> float:
    """The learning rate of global step ``iteration`` (0-based over the whole
    run; epoch e, 1-based, holds steps (e-1)N .. eN-1 with N =
    ``iterations_per_epoch``) under schedule ``spec`` (a regime's
    ``lr_schedule``; None: ``base_lr`` throughout).

    The schedule is read at the step's start, t = iteration / N epochs:

    - ``constant``: ``base_lr``;
    - ``piecewise``: ``base_lr`` x ``factors[k]`` for the last boundary k with
      t >= boundary (``unit: epoch``) or t / epochs >= boundary (``unit:
      fraction``), ``base_lr`` before the first; a boundary on an epoch's edge
      therefore changes the rate from the first step of the next epoch;
    - ``cosine``: ``base_lr`` x (f + (1 - f)(1 + cos(pi t / epochs)) / 2), f =
      ``final_factor`` (default 0);

    times, with ``warmup_epochs`` W > 0, the linear warm-up min(1, (iteration +
    1) / (W N)): the first step runs at ``base_lr`` / (W N), the last of the
    warm-up at the full rate.
    """
    if spec is None:
        return float(base_lr)
    steps = int(iterations_per_epoch)
    kind = spec["type"]
    if kind == "constant":
        factor = 1.0
    elif kind == "piecewise":
        # One division, compared with the boundary as written: a step exactly on
        # a boundary (e.g. 0.3 of 10 epochs of 3 steps = step 9) counts as past it.
        progress = (iteration / (steps * int(epochs)) if spec["unit"] == "fraction"
                    else iteration / steps)
        factor = 1.0
        for boundary, value in zip(spec["boundaries"], spec["factors"]):
            if progress >= boundary:
                factor = float(value)
    elif kind == "cosine":
        final = float(spec.get("final_factor", 0.0))
        factor = final + (1.0 - final) * 0.5 * (1.0 + math.cos(
            math.pi * iteration / (steps * int(epochs))))
    else:
        raise ValueError(f"lr_schedule.type: {kind!r} is not one of {list(SCHEDULES)}")
    warmup = float(spec.get("warmup_epochs", 0) or 0)
    if warmup > 0:
        factor *= min(1.0, (iteration + 1) / (warmup * steps))
    return float(base_lr) * factor


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps per epoch: the last batch may be partial, as with ``model.fit``."""
    return -(-int(n_train) // int(batch_size))


# ---------------------------------------------------------------- augmentation

def augmentation_seed(seed: int, epoch: int) -> int:
    """The seed of (1-based) ``epoch``'s augmentation; batch b draws from
    ``numpy.random.default_rng([augmentation_seed(seed, epoch), b])``."""
    return job_seed(seed, "augmentation", epoch)


def pad(x: np.ndarray, padding: int, mode: str = "constant") -> np.ndarray:
    """NHWC images padded by ``padding`` pixels on every side: zeros
    (``constant``, torchvision's ``RandomCrop(padding=p)``) or mirrored without
    repeating the edge (``reflect``, Rice et al.'s ``np.pad(mode='reflect')``)."""
    widths = [(0, 0), (padding, padding), (padding, padding), (0, 0)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant")
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    raise ValueError(f"padding_mode: {mode!r} is not one of {list(PADDING_MODES)}")


def crop(x: np.ndarray, top: np.ndarray, left: np.ndarray, height: int,
         width: int) -> np.ndarray:
    """Image i's ``height`` x ``width`` window at (``top[i]``, ``left[i]``), a new array."""
    windows = np.lib.stride_tricks.sliding_window_view(x, (height, width), axis=(1, 2))
    picked = windows[np.arange(len(x)), np.asarray(top), np.asarray(left)]  # (n, C, h, w)
    return np.ascontiguousarray(picked.transpose(0, 2, 3, 1))


def random_crop(x: np.ndarray, padding: int, top: np.ndarray, left: np.ndarray,
                mode: str = "constant") -> np.ndarray:
    """Pad by ``padding``, then cut image i back to its size at (``top[i]``,
    ``left[i]``), each in [0, 2 x padding]: a shift by (padding - top, padding -
    left) with the padding filling in (torchvision's ``RandomCrop(size, padding)``)."""
    height, width = x.shape[1], x.shape[2]
    return crop(pad(x, padding, mode), top, left, height, width)


def flip_horizontal(x: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Image i mirrored left-right where ``flip[i]``, unchanged elsewhere (a new array)."""
    out, chosen = x.copy(), np.flatnonzero(np.asarray(flip, bool))
    out[chosen] = x[chosen, :, ::-1]
    return out


def cutout(x: np.ndarray, top: np.ndarray, left: np.ndarray, size: int) -> np.ndarray:
    """Image i with the ``size`` x ``size`` square at (``top[i]``, ``left[i]``) set to 0
    (Rice et al.'s Cutout: the square lies inside the image)."""
    out = x.copy()
    for i, (row, col) in enumerate(zip(np.asarray(top).tolist(), np.asarray(left).tolist())):
        out[i, row:row + size, col:col + size] = 0
    return out


def draw_augmentation(spec: dict, n: int, image_shape, rng: np.random.Generator) -> dict:
    """The random choices for ``n`` images, in a fixed order: crop offsets
    (``crop_top``, ``crop_left``, uniform in [0, 2 x padding]), flips
    (``flip``, each with probability 1/2), cutout corners (``cutout_top``,
    ``cutout_left``, uniform over the positions where the square fits)."""
    height, width = int(image_shape[0]), int(image_shape[1])
    draws = {}
    if spec.get("crop"):
        span = 2 * int(spec["crop"]["padding"]) + 1
        draws["crop_top"] = rng.integers(0, span, n)
        draws["crop_left"] = rng.integers(0, span, n)
    if spec.get("flip"):
        draws["flip"] = rng.integers(0, 2, n).astype(bool)
    if spec.get("cutout"):
        size = int(spec["cutout"]["size"])
        draws["cutout_top"] = rng.integers(0, height - size + 1, n)
        draws["cutout_left"] = rng.integers(0, width - size + 1, n)
    return draws


def augment(x: np.ndarray, spec: dict, seed) -> np.ndarray:
    """``x`` (NHWC) cropped, flipped and cut out, in that order (Rice et al.'s),
    with the choices drawn from ``numpy.random.default_rng(seed)``; ``seed`` is
    anything a NumPy seed sequence takes (training passes [augmentation_seed, batch]).
    A new array: ``x`` is left as it is."""
    original = x = np.asarray(x)
    draws = draw_augmentation(spec, len(x), x.shape[1:], np.random.default_rng(seed))
    if "crop_top" in draws:
        x = random_crop(x, int(spec["crop"]["padding"]), draws["crop_top"], draws["crop_left"],
                        spec["crop"].get("padding_mode", "constant"))
    if "flip" in draws:
        x = flip_horizontal(x, draws["flip"])
    if "cutout_top" in draws:
        x = cutout(x, draws["cutout_top"], draws["cutout_left"], int(spec["cutout"]["size"]))
    return x.copy() if x is original else x


# ---------------------------------------------------------------- per-step hooks

class StepRecipe:
    """What a regime's recipe does at every training step: set the step's
    learning rate and augment the batch. Built by :func:`step_recipe`;
    :mod:`advfit.models.training` and :mod:`advfit.models.adversarial_training`
    call :meth:`before_step` on every batch, in order.
    """

    def __init__(self, recipe: dict, base_lr: float, epochs: int, n_train: int,
                 batch_size: int, seed: int):
        self.schedule, self.augmentation = recipe["lr_schedule"], recipe["augmentation"]
        self.base_lr, self.epochs, self.seed = float(base_lr), int(epochs), int(seed)
        self.steps = iterations_per_epoch(n_train, batch_size)

    def rate(self, epoch: int, batch: int) -> float:
        """The learning rate of batch ``batch`` (0-based) of ``epoch`` (1-based)."""
        return learning_rate(self.schedule, self.base_lr, (epoch - 1) * self.steps + batch,
                             self.steps, self.epochs)

    def epoch_rate(self, epoch: int) -> float:
        """The rate of ``epoch``'s last step: the history's ``learning_rate``, to 12
        significant digits (0.005, not 0.005000000000000001; the optimizer holds
        it in float32 anyway)."""
        return float(f"{self.rate(epoch, self.steps - 1):.12g}")

    def before_step(self, optimizer, epoch: int, batch: int, x: np.ndarray) -> np.ndarray:
        """Set ``optimizer``'s rate for this step; return the batch to train on."""
        if self.schedule is not None:
            optimizer.learning_rate = self.rate(epoch, batch)
        if self.augmentation is not None:
            x = augment(x, self.augmentation, [augmentation_seed(self.seed, epoch), batch])
        return x


def step_recipe(regime: dict, n_train: int, seed: int) -> StepRecipe | None:
    """The per-step part of ``regime``'s recipe (schedule, augmentation); None
    when it has neither (the training loops then run exactly as without recipes)."""
    if "lr_schedule" not in regime and "augmentation" not in regime:
        return None
    return StepRecipe(resolve_recipe(regime), regime["learning_rate"], regime["epochs"],
                      n_train, regime["batch_size"], seed)


# ---------------------------------------------------------------- weight decay

def decayed_variables(model, scope: str = "kernels") -> list:
    """The trainable variables weight decay applies to: with ``kernels``, the
    weight matrices and filters (variables named ``kernel``, ``depthwise_kernel``,
    ``pointwise_kernel``, ...; of Dense and Conv layers), not biases nor
    BatchNormalization's gamma and beta; with ``all``, every trainable variable
    (PyTorch's ``SGD(weight_decay=...)`` on ``model.parameters()``)."""
    variables = list(model.trainable_variables)
    if scope == "all":
        return variables
    if scope != "kernels":
        raise ValueError(f"weight_decay_scope: {scope!r} is not one of {list(DECAY_SCOPES)}")
    return [v for v in variables if v.name.split("/")[-1].split(":")[0].endswith("kernel")]


_COUPLED: dict = {}


def coupled_optimizer_class(base):
    """``base`` (a Keras optimizer class) with coupled L2 weight decay: the
    gradient of every variable passed to ``decay(...)`` gets ``weight_decay x
    variable`` added before ``base``'s update (and so goes through its momentum
    or moments). That is the gradient of (weight_decay / 2) x sum of squares
    added to the loss, PyTorch's ``SGD(weight_decay=...)``; the loss the
    model reports (the history's) stays the cross-entropy, as in Rice et al.'s logs."""
    if base in _COUPLED:
        return _COUPLED[base]

    class Coupled(base):
        def __init__(self, *args, coupled_weight_decay: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.coupled_weight_decay = float(coupled_weight_decay)
            self._coupled_keys: set = set()

        def decay(self, variables) -> None:
            """Which variables the decay applies to (the others keep their gradient)."""
            self._coupled_keys = {self._var_key(v) for v in variables}

        def update_step(self, gradient, variable, learning_rate):
            if self._var_key(variable) in self._coupled_keys:
                from keras import ops

                gradient = ops.add(ops.cast(gradient, variable.dtype), ops.multiply(
                    ops.cast(self.coupled_weight_decay, variable.dtype), variable))
            return super().update_step(gradient, variable, learning_rate)

    Coupled.__name__ = Coupled.__qualname__ = f"Coupled{base.__name__}"
    _COUPLED[base] = Coupled
    return Coupled
