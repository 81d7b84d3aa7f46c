"""Docstring descriptions, names, headers and stage labels."""

import libcst as cst

from modularize.docstrings import parameter_descriptions
from modularize.header import edited_by_hand, read_header, sha256, with_header
from modularize.naming import Naming, block_key, words_of
from modularize.segment import kind_of_label, label_title, stage_label

DOCSTRING = """
    Function invoked when calling the pipeline.

    Args:
        prompt (`str` or `list[str]`, *optional*):
            The prompt or prompts to guide image generation. If not defined, you need to pass `prompt_embeds`.
        ip_adapter_image: (`PipelineImageInput`, *optional*): Optional image input to work with IP Adapters.
        output_type (`str`, *optional*, defaults to `"pil"`):
            The output format.

    Examples:
        prompt (`str`): not a parameter
"""


def test_parameter_descriptions_join_continuation_lines_and_stop_at_the_next_section():
    descriptions = parameter_descriptions(DOCSTRING)
    assert descriptions["prompt"].startswith("The prompt or prompts to guide image generation. If not defined")
    assert descriptions["ip_adapter_image"] == "Optional image input to work with IP Adapters."
    assert descriptions["output_type"] == "The output format."
    assert set(descriptions) == {"prompt", "ip_adapter_image", "output_type"}


def test_names_come_from_the_pipeline_class():
    naming = Naming.of_pipeline("StableDiffusionXLPipeline")
    assert (naming.prefix, naming.model_name, naming.package) == (
        "StableDiffusionXL",
        "stable-diffusion-xl",
        "modular_stable_diffusion_xl",
    )
    assert naming.pipeline_class == "StableDiffusionXLModularPipeline"
    assert words_of("PixArtSigma") == ["pix", "art", "sigma"]
    assert block_key("Prepare extra step kwargs") == "prepare_extra_step_kwargs"
    assert naming.block_class("prepare_timesteps") == "StableDiffusionXLPrepareTimestepsStep"


def test_stage_labels_are_matched_by_label_not_number():
    def second(text: str):
        return cst.parse_module("y = 0\n" + text).body[1]  # comments above the first line belong to the module

    assert stage_label(second("# to deal with lora scaling\n# 7. Denoising loop\nx = 1\n")) == "7. Denoising loop"
    assert stage_label(second("# 6.1 Add image embeds\nx = 1\n")) == "6.1 Add image embeds"
    assert stage_label(second("# expand the latents\nx = 1\n")) is None
    assert label_title("6. Prepare extra step kwargs. TODO: Logic should move") == "Prepare extra step kwargs"
    assert kind_of_label("9. Denoising loop") == "denoise"
    assert kind_of_label("3. Encode input prompt") == "encode"
    assert kind_of_label("1. Check inputs. Raise error if not correct") == "input"
    assert kind_of_label("4. Prepare timesteps") == "before_denoise"


def test_headers_tell_a_hand_edit_from_a_generated_file():
    text = with_header("x = 1\n", "pkg/pipeline_a.py", "APipeline", "source text", "modularize test")
    header, body = read_header(text)
    assert body == "x = 1\n"
    assert header.source == "pkg/pipeline_a.py" and header.source_sha256 == sha256("source text")
    assert not edited_by_hand(text)
    assert edited_by_hand(text.replace("x = 1", "x = 2"))
    assert read_header("x = 1\n") is None
