"""Factories keyed by component class, and what a factory is told about the component it builds.

A factory is `def build(need: Need) -> component`, registered under one or more class names with `@factory(...)`.
It reads its sizes from `need.dims` (the shared tiny dimensions) and the couplings with the pipeline's other
components from `need` (how many text encoders the denoiser listens to, which tokenizer a text encoder pairs
with), and builds `need.cls` (the class the pipeline's constructor asks for, which may be a subclass).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..tiny_parts import seeded
from .dims import Dims

Factory = Callable[["Need"], Any]
FACTORIES: dict[str, Factory] = {}


def factory(*class_names: str) -> Callable[[Factory], Factory]:
    def register(function: Factory) -> Factory:
        for name in class_names:
            FACTORIES[name] = function
        return function

    return register


def factory_for(cls: type) -> Factory | None:
    """The factory for `cls`: its own, or the nearest registered base class's (a user's subclass of
    `UNet2DConditionModel` gets the UNet factory). Scheduler classes all share one factory."""
    from . import factories  # noqa: F401  (registers every factory)

    for base in getattr(cls, "__mro__", (cls,)):
        found = FACTORIES.get(getattr(base, "__name__", ""))
        if found is not None:
            return found
    if _is_scheduler(cls):
        return FACTORIES["SchedulerMixin"]
    return None


def _is_scheduler(cls: type) -> bool:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    return isinstance(cls, type) and issubclass(cls, SchedulerMixin)


def _role_suffix(name: str) -> str:
    """`text_encoder_2` -> `_2`; `text_encoder` -> ``: components with the same suffix belong together."""
    head, _, tail = name.rpartition("_")
    return f"_{tail}" if head and tail.isdigit() else ""


def _group_prefix(name: str) -> str:
    """`prior_text_encoder` -> `prior_`; `text_encoder` -> ``: a combined pipeline names the components of its
    prior pipeline with the prefix `prior_`, and they belong together."""
    for role in ("text_encoder", "image_encoder"):
        if role in name:
            return name[: name.index(role)]
    return ""


@dataclass(frozen=True)
class Need:
    """One constructor argument of one pipeline, to be built."""

    name: str  # the constructor argument (`text_encoder_2`)
    cls: type  # the class to build
    dims: Dims
    seed: int
    pipeline: type  # the standard pipeline class
    classes: Mapping[str, type | None]  # every component argument -> the class it gets (None: left out)
    config: Mapping[str, Any] = field(default_factory=dict)  # per-pipeline constructor overrides (data)
    widths: Mapping[str, int] = field(default_factory=dict)  # text encoders wider than `dims.text_hidden`

    def model(self, build: Callable[..., Any], **kwargs: Any) -> Any:
        """`build(**kwargs)` with the pipeline's overrides merged in, seeded, in eval mode."""
        arguments = {**kwargs, **self.config}

        def make():
            made = build(**arguments)
            return made.eval() if hasattr(made, "eval") else made

        return seeded(self.seed, make)

    # -- couplings with the other components ---------------------------------------------------------------------
    def partner(self, prefix: str) -> str:
        """The component of this one's group with another role: `text_encoder_2`.partner("tokenizer") ->
        `tokenizer_2`, `prior_text_encoder`.partner("tokenizer") -> `prior_tokenizer`."""
        return _group_prefix(self.name) + prefix + _role_suffix(self.name)

    def class_of(self, name: str) -> type | None:
        return self.classes.get(name)

    @property
    def text_encoders(self) -> list[str]:
        return [n for n, c in self.classes.items() if c is not None and n.startswith("text_encoder")]

    def has_class(self, *class_names: str) -> bool:
        return any(c is not None and c.__name__ in class_names for c in self.classes.values())

    def text_width(self, name: str = "text_encoder") -> int:
        """The width of a text encoder's hidden states (`dims.text_hidden` unless the pipeline says otherwise)."""
        return self.widths.get(name, self.dims.text_hidden)

    def tokenizer_length(self) -> int:
        """`len()` of the tokenizer this text encoder is paired with: its `vocab_size`."""
        tokenizer = self.tokenizer()
        return len(tokenizer) if tokenizer is not None else 1000

    def tokenizer(self):
        """A fresh copy of the tokenizer paired with this component (tokenizers are deterministic)."""
        from .resolve import TOKENIZER_OF

        name = self.partner("tokenizer")
        cls = self.classes.get(name)
        if cls is None:
            default = TOKENIZER_OF.get(self.cls.__name__)
            if default is None:
                return None
            cls = _class_named(default, self.pipeline)
        build = factory_for(cls)
        tokenizer = build(Need(name, cls, self.dims, self.seed, self.pipeline, self.classes, widths=self.widths))
        from transformers import ProcessorMixin

        # a processor holds its tokenizer (a tokenizer may hold something named `tokenizer` too: ChatGLM's model)
        return tokenizer.tokenizer if isinstance(tokenizer, ProcessorMixin) else tokenizer


def _class_named(name: str, pipeline: type | None = None) -> type:
    """The class called `name` as the pipeline's own file sees it (a class it defines, such as LDM's
    `LDMBertModel`, which diffusers does not export, or one it imports), else transformers' or diffusers'.

        _class_named("LDMBertModel", LDMTextToImagePipeline)  # -> pipeline_latent_diffusion.LDMBertModel
        _class_named("CLIPTokenizer")                         # -> transformers.CLIPTokenizer
    """
    import sys

    import diffusers
    import transformers

    own = sys.modules.get(pipeline.__module__) if pipeline is not None else None
    for module in (own, transformers, diffusers):
        found = getattr(module, name, None) if module is not None else None
        if isinstance(found, type):
            return found
    raise LookupError(name)
