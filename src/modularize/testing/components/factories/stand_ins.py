"""Stand-ins for components a pipeline refuses to run without but that cannot be built tiny: a safety checker
that passes everything (Cosmos' guardrail needs its own package and large models)."""

from __future__ import annotations

from ..registry import Need, factory


def _pass_through_checker_class():
    import torch
    from diffusers import ConfigMixin, ModelMixin

    class PassThroughSafetyChecker(ModelMixin, ConfigMixin):
        """Finds every prompt and every video safe, and changes nothing."""

        def __init__(self):
            super().__init__()
            # one parameter, so the pipeline's device and dtype lookups over its modules find something
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def check_text_safety(self, prompt: str) -> bool:
            return True

        def check_video_safety(self, frames):
            return frames

    return PassThroughSafetyChecker


@factory("CosmosSafetyChecker")
def pass_through_safety_checker(need: Need):
    return _pass_through_checker_class()()
