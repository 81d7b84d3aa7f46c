"""A generated pipeline saved with `save_pretrained` loads back as itself with `ModularPipeline.from_pretrained`.

Why this exists: `ModularPipeline.from_pretrained(directory)` builds the class named by the saved
`modular_model_index.json` (`_class_name`), looked up by name in the `diffusers` namespace, around the blocks named by
the directory's `modular_config.json` (`auto_map`, custom code loaded with `trust_remote_code=True`). A generated
package is neither in diffusers nor in the saved directory, so diffusers would build its hand-written class of the
same model (or fail). So:

- `register_in_diffusers(...)`, called when a package's blocks module is imported, makes the package's pipeline and
  blocks classes findable by name in `diffusers` (their names are the package's own: no diffusers class is shadowed);
- `SavedWithPackage.save_pretrained` also saves the blocks' `modular_config.json` and the package's modules beside
  the components, as a repository of custom blocks holds them, so a fresh process loads the directory with
  `ModularPipeline.from_pretrained(directory, trust_remote_code=True)` and nothing else.
"""

import shutil
import sys
from pathlib import Path


def register_in_diffusers(*classes):
    """Make `classes` findable by name in the `diffusers` namespace, never in place of one of diffusers' own."""
    import diffusers

    for cls in classes:
        existing = getattr(diffusers, cls.__name__, None)
        if existing is not None and getattr(existing, "__module__", "").startswith("diffusers."):
            continue
        setattr(diffusers, cls.__name__, cls)


class SavedWithPackage:
    """Pipeline mixin: `save_pretrained` writes the blocks' config and the package's modules too."""

    package_modules = ()  # the package's module names (`denoise`, ...), named by each pipeline class

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("push_to_hub"):
            return  # the components went to the Hub; the code stays a local concern
        self.blocks.save_pretrained(save_directory)
        package = Path(sys.modules[type(self).__module__].__file__).parent
        for name in self.package_modules:
            shutil.copyfile(package / f"{name}.py", Path(save_directory) / f"{name}.py")
