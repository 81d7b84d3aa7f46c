"""A model family's package: the workflows of several standard pipelines (text-to-image, image-to-image,
inpainting, ...) as one pipeline whose blocks select a workflow by the inputs a call gives.

Why this exists: diffusers' own modular packages select a workflow with `AutoPipelineBlocks` (the first sub-block
whose trigger input is given runs) and run it on one pipeline object holding every component. A generated family
package does the same over the workflows' blocks, each workflow converted from its own standard pipeline and keeping
its own pipeline class. What those classes define differently (a derived `image_processor`, the guider a standard
call installs, the arguments it serves) is, on the family's pipeline, the definition of the workflow running:

    pipe = StableDiffusionFamilyGeneratedModularPipeline()       # blocks: every workflow, selected by trigger
    pipe(prompt="a cat")                                         # text-to-image (no trigger given)
    pipe(prompt="a cat", image=picture, mask_image=mask)         # inpainting: its `mask_processor`, its defaults

Every generated family's `modular_pipeline.py` carries `FamilyPipeline` and `WorkflowMember`, its blocks module
`WorkflowBlocks` (each copied by name, with a `# Copied from modularize.emit.runtime.family.<name>` line).
"""

from contextlib import contextmanager
from copy import deepcopy
from inspect import getattr_static

# What the family's pipeline class does itself: constructing, registering components, and a call, which selects
# the workflow before anything of a workflow's is looked up
_FAMILY_OWN = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__dict__",
        "__weakref__",
        "__init__",
        "__call__",
        "__annotations__",
        "register_components",
        "get_component_spec",
        "update_components",
        "_adapt_components",
        "translate_standard_call",
        "package_modules",
    }
)


class WorkflowMember:
    """A member the workflows' pipeline classes define (differently, or not all of them): looked up on the pipeline
    class of the workflow running, of the first workflow defining it when that one does not.

    A name one workflow derives (Kandinsky 2.2 image-to-image's `image_processor` property) may be a component of
    another (its prior's `image_processor`): the pipeline holds the component, and the running workflow's
    property, where it has one, is what that workflow reads."""

    def __init__(self, name):
        self.name = name

    def __get__(self, pipeline, owner=None):
        owner = owner if owner is not None else type(pipeline)
        running = owner.default_workflow if pipeline is None else pipeline.active_workflow
        if pipeline is not None and self.name in pipeline.__dict__:
            own = getattr_static(owner.workflow_pipelines[running], self.name, None)
            if not isinstance(own, property):
                return pipeline.__dict__[self.name]
        classes = [owner.workflow_pipelines[running], *owner.workflow_pipelines.values()]
        for workflow_class in classes:
            try:
                value = getattr_static(workflow_class, self.name)
            except AttributeError:
                continue
            if pipeline is None or not hasattr(value, "__get__"):
                return value
            return value.__get__(pipeline, owner)
        raise AttributeError(self.name)

    def __set__(self, pipeline, value):
        pipeline.__dict__[self.name] = value


class FamilyPipeline:
    """Pipeline mixin: the workflows' members looked up by the workflow running, which a call selects as the
    family's blocks do (`workflow_triggers`: the first whose trigger input is given, else the default)."""

    workflow_pipelines = {}  # workflow name -> its pipeline class, in selection order
    workflow_triggers = ()  # (workflow name, trigger input), the default's trigger None
    default_workflow = None
    # workflow name -> (the components its standard `__init__` adapts, whether it registers what it returns)
    adapted_components = {}
    workflows_block = "workflows"  # the name of the `AutoPipelineBlocks` among the family's blocks
    # block class name -> the workflows running it: a block run alone (`block.init_pipeline()`) runs as one of them
    block_workflows = {}
    # workflow name -> {argument of its standard call: the input it is here}, for an argument another workflow
    # needs under the same name (SDXL ControlNet's control `image` beside image-to-image's init `image`)
    renamed_arguments = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = set(vars(cls))
        for workflow_class in cls.workflow_pipelines.values():
            for name in vars(workflow_class):
                if name not in own and name not in _FAMILY_OWN:
                    setattr(cls, name, WorkflowMember(name))
                    own.add(name)

    @property
    def active_workflow(self):
        return self.__dict__.get("_active_workflow") or self.default_workflow

    @contextmanager
    def running_workflow(self, name):
        """While it lasts, the workflow's members and its adapted components are the pipeline's."""
        previous = self.__dict__.get("_active_workflow")
        swapped = self.workflow_components(name) if previous != name else {}
        kept = {component: self.__dict__.get(component) for component in swapped}
        self._active_workflow = name
        self.__dict__.update(swapped)
        try:
            yield
        finally:
            self.__dict__.update(kept)
            self._active_workflow = previous

    def workflow_for(self, inputs):
        """The workflow a call with `inputs` runs: as `AutoPipelineBlocks.select_block` selects it."""
        for name, trigger in self.workflow_triggers:
            if trigger is not None and inputs.get(trigger) is not None:
                return name
        return self.default_workflow

    def workflow_blocks(self, name):
        """The blocks the workflow runs: its blocks among the family's, or the pipeline's own blocks when they are
        not the family's (a block run alone)."""
        workflows = getattr(self._blocks, "sub_blocks", {}).get(self.workflows_block)
        if workflows is None or name not in workflows.sub_blocks:
            return self._blocks
        return workflows.sub_blocks[name]

    def _selected_workflow(self, inputs):
        """The workflow a call runs: the one its inputs select, unless the pipeline's blocks are one block that
        workflow does not run (a block run alone): then the first workflow running it."""
        name = self.workflow_for(inputs)
        running = self.block_workflows.get(type(self._blocks).__name__)
        if running and name not in running:
            return running[0]
        return name

    def get_component_spec(self, name):
        """While a workflow runs, its own blocks' spec of the component (the guider its standard call installs is
        created from it: SDXL InstructPix2Pix's three-way guider, not image-to-image's): the family's pipeline holds
        one spec per name, the first workflow's, or that of the component installed last."""
        running = self.__dict__.get("_active_workflow")
        declared = self._declared_spec(running, name) if running is not None else None
        return deepcopy(declared) if declared is not None else super().get_component_spec(name)

    def update_components(self, **kwargs):
        """A component the workflows declare with different classes (AnimateDiff SparseControlNet's `controlnet`
        beside ControlNet's) is checked against the spec of a workflow declaring its class: diffusers checks it
        against the one spec per name the family's pipeline holds (the first workflow's), and fails formatting
        the mismatch when that spec's class is a union."""
        specs = getattr(self, "_component_specs", {})
        for name, component in kwargs.items():
            current = specs.get(name)
            if current is None or component is None or _accepts(current.type_hint, component):
                continue
            for workflow in self.workflow_pipelines:
                declared = self._declared_spec(workflow, name)
                if declared is not None and _accepts(declared.type_hint, component):
                    specs[name] = deepcopy(declared)
                    break
        super().update_components(**kwargs)

    def _declared_spec(self, workflow, name):
        """The spec the workflow's blocks declare for component `name`, None when they declare none."""
        return next((spec for spec in self.workflow_blocks(workflow).expected_components if spec.name == name), None)

    def register_components(self, **kwargs):
        super().register_components(**kwargs)
        # the components as given, whichever workflow runs: what each workflow adapts is adapted from these
        registered = self.__dict__.setdefault("_registered_components", {})
        registered.update({name: self.__dict__.get(name) for name in kwargs})
        # adapted now, as each workflow's own pipeline adapts what it is given (its `__init__`), not during a call:
        # adapting may draw from the global random generator (AnimateDiff builds its motion UNet), which a call's
        # seed must find untouched
        for name in self.adapted_components:
            try:
                self.workflow_components(name)
            except Exception:
                # components meant for another workflow, which this one's adaptation cannot take (ControlNet-XS
                # builds its adapter from a ControlNet it is not given): tried again, and raised, if this one runs
                continue

    def workflow_components(self, name):
        """{component: the object the workflow runs with} for the components its standard `__init__` changes
        (an outdated scheduler config fixed, say): those changes made to shallow copies, once per set of
        components given, so that no workflow runs with another workflow's changes, as no standard pipeline does."""
        adapted, registers_again = self.adapted_components.get(name, ((), False))
        if not adapted:
            return {}
        registered = self.__dict__.get("_registered_components", {})
        originals = {component: registered.get(component) for component in adapted}
        if all(value is None for value in originals.values()):
            return {}  # (as a workflow's own pipeline adapts only components it is given)
        made = self.__dict__.setdefault("_workflow_components", {})
        given, result = made.get(name, ((), None))
        if result is None or any(a is not b for a, b in zip(given, originals.values(), strict=True)):
            copies = {component: _shallow_copy(value) for component, value in originals.items()}
            returned = vars(self.workflow_pipelines[name])["_adapt_components"](self, **copies)
            if registers_again:
                copies.update(returned)
            result = {
                component: value
                for component, value in copies.items()
                if value is not None and _changed(value, originals.get(component))
            }
            made[name] = (tuple(originals.values()), result)
        return result

    def translate_standard_call(self, workflow=None, **kwargs):
        """Keyword arguments of the standard call of `workflow` (by default, of the workflow they select) ->
        keyword arguments of this pipeline. A workflow taking an argument under another name here
        (`renamed_arguments`) is selected by name: its standard call gives that argument by the name another
        workflow's trigger has."""
        if workflow is not None and workflow not in self.workflow_pipelines:
            raise ValueError(f"no workflow {workflow!r}: the workflows are {list(self.workflow_pipelines)}")
        name = workflow or self._selected_workflow(kwargs)
        renamed = self.renamed_arguments.get(name, {})
        kwargs = {renamed.get(argument, argument): value for argument, value in kwargs.items()}
        with self.running_workflow(name):
            return self._from_standard_arguments(kwargs, strict=True)

    def __call__(self, state=None, output=None, **kwargs):
        given = {**(state.values if state is not None else {}), **kwargs}
        name = self._selected_workflow(given)
        with self.running_workflow(name):
            standard = (*self.guider_arguments, *self.unserved_arguments, *self.ignored_arguments)
            if any(argument in kwargs for argument in standard):
                kwargs = self._from_standard_arguments(kwargs, strict=False)
            # the running workflow's own defaults: where workflows declare different ones, the family's blocks
            # merge them to None, which a block would take for an explicit None
            for param in self.workflow_blocks(name).inputs:
                if param.name and param.name not in given and param.name not in kwargs:
                    kwargs[param.name] = param.default
            return super().__call__(state, output, **kwargs)


def _accepts(type_hint, component):
    """Whether a spec's class admits the component (a hint `isinstance` cannot test admits anything, as it does in
    diffusers' own check)."""
    try:
        return type_hint is None or isinstance(component, type_hint)
    except TypeError:
        return True


def _shallow_copy(value):
    """A new object of the same class sharing every attribute's value (weights included): what adapting it sets
    anew is its own."""
    if value is None:
        return None
    duplicate = object.__new__(type(value))
    duplicate.__dict__.update(vars(value))
    return duplicate


def _changed(adapted, original):
    """Whether adapting a shallow copy changed it: an attribute set anew, added or removed."""
    if adapted is not original and original is None:
        return True
    mine, theirs = vars(adapted), vars(original)
    return mine.keys() != theirs.keys() or any(mine[name] is not theirs[name] for name in mine)


class WorkflowBlocks:
    """Blocks mixin for one workflow's blocks in a family: while they run on the family's pipeline, its
    workflow-specific members are this workflow's."""

    workflow = None  # the workflow's name, given by each workflow's blocks class

    def __call__(self, pipeline, state):
        running = getattr(pipeline, "running_workflow", None)
        if running is None:
            return super().__call__(pipeline, state)
        with running(self.workflow):
            return super().__call__(pipeline, state)
