"""Names of generated things, derived from the standard pipeline's names.

StableDiffusionXLPipeline -> prefix "StableDiffusionXL", model "stable-diffusion-xl",
                             package "modular_stable_diffusion_xl"
"6. Prepare extra step kwargs. TODO: ..." -> block "prepare_extra_step_kwargs",
                                            class "<prefix>PrepareExtraStepKwargsStep"
"""

from __future__ import annotations

from dataclasses import dataclass

_STOP_WORDS = {"the", "a", "an", "to", "if", "of"}
_MAX_WORDS = 6


def words_of(name: str) -> list[str]:
    """CamelCase -> words, keeping acronyms and digits together: `StableDiffusionXL2` -> [stable, diffusion, xl2]."""
    words: list[str] = []
    current = ""
    for index, char in enumerate(name):
        if not char.isalnum():
            if current:
                words.append(current)
            current = ""
            continue
        previous = name[index - 1] if index else ""
        following = name[index + 1] if index + 1 < len(name) else ""
        boundary = char.isupper() and current and (previous.islower() or (following.islower() and previous.isupper()))
        if boundary:
            words.append(current)
            current = ""
        current += char
    if current:
        words.append(current)
    return [word.lower() for word in words]


@dataclass(frozen=True)
class Naming:
    prefix: str  # StableDiffusion
    # modularize-stable-diffusion: a name of its own, so nothing keyed by diffusers' model names (`init_pipeline` of
    # blocks composed from these, `ModularPipeline.from_pretrained`) picks diffusers' hand-written classes for it
    model_name: str
    package: str  # modular_stable_diffusion

    @classmethod
    def of_pipeline(cls, class_name: str) -> Naming:
        prefix = class_name[: -len("Pipeline")] if class_name.endswith("Pipeline") else class_name
        words = words_of(prefix) or ["pipeline"]
        return cls(
            prefix=prefix or "Pipeline",
            model_name="-".join(["modularize", *words]),
            package="modular_" + "_".join(words),
        )

    # The package's classes are findable by name in `diffusers` (where `ModularPipeline.from_pretrained` looks a
    # saved pipeline's classes up): "Generated" keeps them apart from diffusers' hand-written classes of the model.
    @property
    def pipeline_class(self) -> str:
        return f"{self.prefix}GeneratedModularPipeline"

    @property
    def blocks_class(self) -> str:
        return f"{self.prefix}GeneratedBlocks"

    @property
    def blocks_module(self) -> str:
        return "modular_blocks_" + self.package[len("modular_") :]

    def block_class(self, key: str) -> str:
        return self.prefix + "".join(word.capitalize() for word in key.split("_")) + "Step"


def block_key(title: str) -> str:
    """`Prepare extra step kwargs` -> `prepare_extra_step_kwargs` (at most six words)."""
    words = [w for w in "".join(c if c.isalnum() else " " for c in title.lower()).split() if w not in _STOP_WORDS]
    return "_".join(words[:_MAX_WORDS]) or "step"
