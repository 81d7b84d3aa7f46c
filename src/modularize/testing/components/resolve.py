"""A pipeline's components from its constructor's type hints.

Each constructor argument is resolved to one class to build, to `None` (an optional component left out), or to
its default (booleans and other scalars); a component class without a factory is *missing*, and the pipeline's
setup says so by name.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .overrides import overrides_for

# Names of optional extras: left out (None) whenever the constructor allows it
OPTIONAL_EXTRAS = ("image_encoder", "feature_extractor", "safety_checker")
# A safety checker is left out even where the hint does not say Optional (its pipelines accept None), unless a
# factory builds its class (a pass-through stand-in, for pipelines that refuse to run without one)
ALWAYS_LEFT_OUT = ("safety_checker",)

# Generic hints that name no buildable class: the text encoder's class decides
AUTO_TOKENIZERS = (
    "AutoTokenizer",
    "AutoProcessor",
    "PreTrainedTokenizerBase",
    "PreTrainedTokenizer",
    "PreTrainedTokenizerFast",
)
# text encoder class -> the tokenizer class it is used with (where the hint is generic)
TOKENIZER_OF = {
    "CLIPTextModel": "CLIPTokenizer",
    "CLIPTextModelWithProjection": "CLIPTokenizer",
    "ContextCLIPTextModel": "CLIPTokenizer",
    "T5EncoderModel": "T5Tokenizer",
    "UMT5EncoderModel": "T5Tokenizer",
    "Qwen2_5_VLForConditionalGeneration": "Qwen2Tokenizer",
    "Qwen2_5_VLTextModel": "Qwen2Tokenizer",
    "Qwen2VLForConditionalGeneration": "Qwen2Tokenizer",
    "Qwen3Model": "Qwen2Tokenizer",
    "Qwen3ForCausalLM": "Qwen2Tokenizer",
    "Qwen3VLForConditionalGeneration": "Qwen2Tokenizer",
    "Qwen3VLModel": "Qwen2Tokenizer",
    "Qwen3VLProcessor": "Qwen2Tokenizer",
    "Gemma2Model": "GemmaTokenizer",
    "Gemma2PreTrainedModel": "GemmaTokenizer",
    "GemmaModel": "GemmaTokenizer",
    "T5GemmaEncoderModel": "GemmaTokenizer",
    "T5Gemma2Encoder": "GemmaTokenizer",
    "LlamaModel": "LlamaTokenizer",
    "LlavaForConditionalGeneration": "LlamaTokenizer",
    "ChatGLMModel": "ChatGLMTokenizer",
    # GLM-4 (CogView4): a byte-level BPE like Qwen2's; the Qwen2 factory adds GLM's `[gMASK]<sop>` prefix and left padding
    "GlmModel": "Qwen2Tokenizer",
    # (Flux 2 hints `AutoProcessor`; it only templates and tokenizes text with it)
    "Mistral3ForConditionalGeneration": "LlamaTokenizer",
    "BertModel": "BertTokenizer",
    "ClapTextModelWithProjection": "RobertaTokenizer",
    "ClapModel": "RobertaTokenizer",
    "MultilingualCLIP": "XLMRobertaTokenizer",
}
# the scheduler a pipeline gets when its hint names a family (`KarrasDiffusionSchedulers`) or the base class
DEFAULT_SCHEDULER = "EulerDiscreteScheduler"
GENERIC_SCHEDULERS = ("SchedulerMixin", "KarrasDiffusionSchedulers")


@dataclass(frozen=True)
class Resolved:
    """What each constructor argument gets: a class to build, `None`, or a scalar default."""

    pipeline: type
    classes: dict[str, type | None]  # component arguments -> class to build (None: left out)
    scalars: dict[str, Any]  # scalar arguments -> value
    missing: tuple[str, ...] = ()  # component classes without a factory (names)
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-component constructor overrides
    override: dict[str, Any] = field(default_factory=dict)  # the pipeline's override entry (data)


def _members(hint: Any) -> list[Any]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return list(typing.get_args(hint))
    return [hint]


def _hints(pipeline: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(pipeline.__init__)
    except Exception:  # an annotation that does not evaluate: fall back to the raw ones
        return {n: p.annotation for n, p in inspect.signature(pipeline.__init__).parameters.items()}


def hinted_classes(pipeline: type, argument: str) -> list[Any]:
    """What the constructor's type hint of `argument` allows: `A | B` -> [A, B]."""
    return _members(_hints(pipeline).get(argument))


def _class_named(name: str, pipeline: type | None = None) -> type:
    from .registry import _class_named as named

    return named(name, pipeline)


def resolve(pipeline: type) -> Resolved:
    """Resolve every constructor argument of `pipeline` (see the module docstring)."""
    from diffusers.schedulers import KarrasDiffusionSchedulers

    from .registry import factory_for

    override = overrides_for(pipeline)
    forced = override.get("classes", {})
    hints = _hints(pipeline)
    classes: dict[str, type | None] = {}
    scalars: dict[str, Any] = {}
    missing: list[str] = []
    pending_tokenizers: list[str] = []
    for name, parameter in list(inspect.signature(pipeline.__init__).parameters.items())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        has_default = parameter.default is not inspect.Parameter.empty
        if name in forced:
            classes[name] = None if forced[name] is None else _class_named(forced[name], pipeline)
            continue
        if name in override.get("scalars", {}):
            scalars[name] = override["scalars"][name]
            continue
        hint = hints.get(name, parameter.annotation)
        members = [m for m in _members(hint) if m is not type(None)]
        optional = (has_default and parameter.default is None) or len(members) < len(_members(hint))
        classes_in_hint = [m for m in members if isinstance(m, type) and not _is_scalar(m)]
        if not classes_in_hint or (has_default and parameter.default is not None):
            if has_default:  # a flag or number: its default
                scalars[name] = parameter.default
            else:
                missing.append(f"{name} (no default, hint {hint!r})")
            continue
        stand_in = name in ALWAYS_LEFT_OUT and any(factory_for(m) is not None for m in classes_in_hint)
        if (name in ALWAYS_LEFT_OUT and not stand_in) or (optional and name in OPTIONAL_EXTRAS and not stand_in):
            classes[name] = None
            continue
        chosen = None
        for member in classes_in_hint:
            if issubclass(member, enum.Enum):
                if member is KarrasDiffusionSchedulers:
                    member = _class_named(override.get("scheduler", DEFAULT_SCHEDULER), pipeline)
                else:
                    continue
            if member.__name__ in GENERIC_SCHEDULERS:
                member = _class_named(override.get("scheduler", DEFAULT_SCHEDULER), pipeline)
            if member.__name__ in AUTO_TOKENIZERS:
                chosen = member
                pending_tokenizers.append(name)
                break
            if factory_for(member) is not None:
                chosen = member
                break
        if chosen is None:
            if optional:
                classes[name] = None
            else:
                missing.append(classes_in_hint[0].__name__)
            continue
        classes[name] = chosen
    # a generic tokenizer hint (`AutoTokenizer`) is the tokenizer its text encoder is used with
    for name in pending_tokenizers:
        suffix = name[len("tokenizer") :] if name.startswith("tokenizer") else ""
        encoder = classes.get("text_encoder" + suffix)
        tokenizer = TOKENIZER_OF.get(encoder.__name__) if encoder is not None else None
        if tokenizer is None:
            classes[name] = None
            if encoder is not None:  # (a missing encoder is reported already)
                missing.append(f"{classes_in_hint_name(hints.get(name))} for {encoder.__name__}")
        else:
            classes[name] = _class_named(tokenizer, pipeline)
    # a scheduler override names the class even where the hint is one concrete scheduler
    if "scheduler" in override and "scheduler" in classes:
        classes["scheduler"] = _class_named(override["scheduler"], pipeline)
    return Resolved(pipeline, classes, scalars, tuple(missing), override.get("config", {}), override)


def classes_in_hint_name(hint: Any) -> str:
    members = [m for m in _members(hint) if m is not type(None)]
    return getattr(members[0], "__name__", str(hint)) if members else str(hint)


def _is_scalar(cls: type) -> bool:
    return cls in (bool, int, float, str, list, tuple, dict) or typing.get_origin(cls) in (list, tuple, dict)
