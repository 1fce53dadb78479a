"""EDM network pickles read without running their code (scoremix.teachers.edm_pickle).

The test writes pickles in EDM's layout: a dict whose 'ema' entry pickles as a call of
torch_utils.persistence._reconstruct_persistent_obj(meta) with meta = dict(type, version, module_src,
class_name, state), nested the same way for every persistent sub-module, torch.nn.ModuleDict containers,
real torch Parameters/tensors (torch._utils._rebuild_parameter / _rebuild_tensor_v2 + storages) and numpy
scalars in the recorded constructor arguments, as EDM's training loop produces with pickle.dump.
The fake torch_utils.persistence exists only while the file is written; its module_src is code that would
create a marker file if anything executed it.
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch

from scoremix.errors import TeacherError
from scoremix.nets.adm import ADM
from scoremix.nets.blocks import NoiseLevelEmbedding, ResampleConv2d, ResidualBlock
from scoremix.nets.ddpmpp import DDPMpp

# ---------------------------------------------------------------------------------------------------------
# Writing files in EDM's layout


def _install_fake_persistence(monkeypatch):
    """A module torch_utils.persistence with a _reconstruct_persistent_obj that pickle can name."""
    package = types.ModuleType("torch_utils")
    module = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # never called by the loader under test
        raise AssertionError("the loader must not call the file's reconstruct function")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package.persistence = module
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
    return module


class Persistent:
    """Pickles like an instance of an EDM @persistent_class."""

    def __init__(self, reconstruct, class_name: str, state: dict, module_src: str):
        self.reconstruct, self.class_name, self.state, self.module_src = reconstruct, class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (self.reconstruct, (meta,), None)


_EDM_NAMES = {
    torch.nn.Linear: "Linear",
    torch.nn.GroupNorm: "GroupNorm",
    ResampleConv2d: "Conv2d",
    ResidualBlock: "UNetBlock",
    NoiseLevelEmbedding: "PositionalEmbedding",
    DDPMpp: "SongUNet",
    ADM: "DhariwalUNet",
}


def _record(module: torch.nn.Module, reconstruct, module_src: str, init_kwargs=None):
    """The EDM-layout pickle object of a scoremix module tree."""
    children = OrderedDict()
    for name, child in module._modules.items():
        if child is None:
            continue
        children[name] = _record(child, reconstruct, module_src)
    if isinstance(module, torch.nn.ModuleDict):
        container = torch.nn.ModuleDict()
        container.__dict__["_modules"] = children  # pickles as the real torch class + its __dict__
        return container
    state = dict(
        training=False,
        _parameters=OrderedDict(
            (k, torch.nn.Parameter(v.detach().clone(), requires_grad=False))
            for k, v in module._parameters.items()
            if v is not None
        ),
        _buffers=OrderedDict((k, None if v is None else v.clone()) for k, v in module._buffers.items()),
        _non_persistent_buffers_set=set(),
        _backward_hooks=OrderedDict(),
        _forward_hooks=OrderedDict(),
        _modules=children,
        _init_args=(),
        _init_kwargs=init_kwargs or {},
    )
    if isinstance(module, ResidualBlock):
        state["skip_scale"] = np.float64(module.skip_scale)  # EDM stores np.sqrt(0.5) here
        state["_init_kwargs"] = dict(
            in_channels=module.in_channels,
            out_channels=module.out_channels,
            skip_scale=np.float64(module.skip_scale),
            eps=np.float32(1e-6),
        )
    return Persistent(reconstruct, _EDM_NAMES[type(module)], state, module_src)


def _randomise(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere (EDM's near-zero output init would hide the network's contribution)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen) * (0.3 if p.ndim > 1 else 0.1)
                + (1.0 if "norm" in name and name.endswith("weight") else 0.0)
            )
    return net.eval()


DDPM_ARGS = dict(
    img_resolution=8,
    in_channels=3,
    out_channels=3,
    label_dim=0,
    augment_dim=9,
    model_channels=16,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[4],
    dropout=0.13,
    embedding_type="positional",
    channel_mult_noise=1,
    encoder_type="standard",
    decoder_type="standard",
    resample_filter=[1, 1],
)
ADM_ARGS = dict(
    img_resolution=8,
    in_channels=3,
    out_channels=3,
    label_dim=10,
    augment_dim=0,
    model_channels=32,
    channel_mult=[1, 2],
    num_blocks=1,
    attn_resolutions=[4],
    dropout=0.1,
)


def _build_ddpmpp():
    return _randomise(
        DDPMpp(
            img_resolution=8,
            in_channels=3,
            out_channels=3,
            model_channels=16,
            channel_mult=(1, 2),
            num_blocks=1,
            attn_resolutions=(4,),
            dropout=0.13,
        ),
        seed=1,
    )


def _build_adm():
    return _randomise(
        ADM(
            img_resolution=8,
            in_channels=3,
            out_channels=3,
            model_channels=32,
            channel_mult=(1, 2),
            num_blocks=1,
            attn_resolutions=(4,),
            dropout=0.1,
            num_classes=10,
        ),
        seed=2,
    )


def write_edm_pickle(
    path,
    monkeypatch,
    net,
    precond_class: str,
    model_class: str,
    model_args: dict,
    precond_state: dict | None = None,
    module_src: str = "",
    edit_state=None,
    extra=None,
):
    """Write `net` as EDM's training loop would: dict(ema=<precond(model)>, loss_fn, augment_pipe, ...)."""
    reconstruct = _install_fake_persistence(monkeypatch)._reconstruct_persistent_obj
    model = _record(net, reconstruct, module_src, init_kwargs=dict(model_args))
    model.class_name = model_class
    if model_args.get("augment_dim"):  # EDM's CIFAR-10 nets carry an augmentation embedding
        weight = torch.nn.Parameter(torch.randn(model_args["model_channels"], model_args["augment_dim"]))
        model.state["_modules"]["map_augment"] = Persistent(
            reconstruct,
            "Linear",
            dict(
                training=False, _parameters=OrderedDict(weight=weight), _buffers=OrderedDict(), _modules=OrderedDict()
            ),
            module_src,
        )
    if edit_state is not None:
        edit_state(model.state)
    wrapper_kwargs = dict(
        img_resolution=model_args["img_resolution"],
        img_channels=model_args["in_channels"],
        label_dim=model_args["label_dim"],
        use_fp16=False,
        model_type=model_class,
        **{
            k: v
            for k, v in model_args.items()
            if k not in ("img_resolution", "in_channels", "out_channels", "label_dim")
        },
    )
    state = dict(
        training=False,
        _parameters=OrderedDict(),
        _buffers=OrderedDict(),
        _modules=OrderedDict(model=model),
        img_resolution=model_args["img_resolution"],
        img_channels=model_args["in_channels"],
        label_dim=model_args["label_dim"],
        use_fp16=False,
        _init_args=(),
        _init_kwargs=wrapper_kwargs,
    )
    state.update(precond_state or {})
    ema = Persistent(reconstruct, precond_class, state, module_src)
    loss_fn = Persistent(
        reconstruct,
        "VPLoss",
        dict(beta_d=19.9, beta_min=0.1, epsilon_t=1e-5, _init_args=(), _init_kwargs={}),
        module_src,
    )
    data = dict(
        ema=ema,
        loss_fn=loss_fn,
        augment_pipe=None,
        dataset_kwargs=dict(class_name="training.dataset.ImageFolderDataset", path="cifar10.zip"),
    )
    data.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path


VP_STATE = dict(beta_d=19.9, beta_min=0.1, M=1000, epsilon_t=1e-5)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "code-ran.txt"
    yield path
    assert not path.exists(), "code embedded in the pickle was executed"


def _marker_source(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('the embedded module source ran')\n"


# ---------------------------------------------------------------------------------------------------------
# Loading reproduces the published preconditioning


def test_vp_ddpmpp_pickle_reproduces_vp_preconditioned_forward_in_float64(tmp_path, monkeypatch, marker):
    from scoremix.teachers import load_teacher

    net = _build_ddpmpp()
    path = write_edm_pickle(
        tmp_path / "edm-tiny-vp.pkl",
        monkeypatch,
        net,
        "VPPrecond",
        "SongUNet",
        DDPM_ARGS,
        VP_STATE,
        module_src=_marker_source(marker),
    )
    teacher = load_teacher(str(path))
    assert not marker.exists()
    info = teacher.info
    assert (info["kind"], info["arch"], info["precond"], info["resolution"], info["channels"], info["num_classes"]) == (
        "edm-pickle",
        "ddpmpp",
        "vp",
        8,
        3,
        0,
    )
    assert info["parameters"] == sum(p.numel() for p in net.parameters())
    assert info["net_config"]["channel_mult"] == [1, 2] and info["net_config"]["dropout"] == pytest.approx(0.13)
    assert info["data_shape"] == [3, 8, 8] and info["dropped"] == ["map_augment"]
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training

    # Reference: the same weights in float64, VP formulas written out (EDM's VPPrecond).
    ref = _build_ddpmpp()  # the library's embeddings compute in float32: F in float32, the rest in float64
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 8, 8, generator=gen, dtype=torch.float64) * 2
    for sigma in (0.01, 0.7, 5.0, 80.0):
        t = (math.sqrt(0.1**2 + 2 * 19.9 * math.log(1 + sigma**2)) - 0.1) / 19.9
        c_noise = torch.full((3,), 999 * t, dtype=torch.float64)
        with torch.no_grad():
            F_x = ref((x / math.sqrt(sigma**2 + 1)).float(), c_noise).double()
            expected = x - sigma * F_x
            got = teacher(x.float(), torch.full((3,), sigma)).double()
        scale = expected.abs().max()
        # c_noise = 999 t is in the hundreds: its float32 rounding (as in EDM) moves D by ~1e-4 relative
        assert (got - expected).abs().max() <= 3e-4 * scale, sigma
        if sigma >= 0.5:  # the network's term matters at this sigma
            assert (F_x * sigma).abs().max() > 0.05 * scale

    # return_features: the bottleneck of the DDPM++ encoder; generator rebuilt from net_config matches.
    denoised, feats = teacher(x.float(), 1.0, return_features=True)
    assert feats.shape == (3, 32, 4, 4)
    from scoremix.config import NetConfig
    from scoremix.nets.build import build_backbone, build_denoiser

    cfg = NetConfig(**info["net_config"])
    rebuilt = build_denoiser(build_backbone(cfg, tuple(info["data_shape"])), cfg, info["sigma_data"])
    rebuilt.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x.float(), 1.0), denoised)


def test_edm_adm_pickle_reproduces_edm_forward_with_integer_and_one_hot_labels(tmp_path, monkeypatch, marker):
    from scoremix.teachers.edm_pickle import load_edm_pickle

    net = _build_adm()
    path = write_edm_pickle(
        tmp_path / "edm-tiny-cond-adm.pkl",
        monkeypatch,
        net,
        "EDMPrecond",
        "DhariwalUNet",
        ADM_ARGS,
        dict(sigma_min=0, sigma_max=float("inf"), sigma_data=0.5),
        module_src=_marker_source(marker),
    )
    teacher = load_edm_pickle(str(path))
    assert (teacher.info["arch"], teacher.info["precond"], teacher.info["num_classes"]) == ("adm", "edm", 10)
    assert teacher.info["sigma_max"] is None and teacher.info["sigma_data"] == 0.5

    ref = _build_adm()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    labels = torch.tensor([0, 3, 9, 3])
    one_hot = torch.nn.functional.one_hot(labels, 10).double()
    sd = 0.5
    for sigma in (0.05, 1.0, 40.0):
        var = sigma**2 + sd**2
        with torch.no_grad():
            F_x = ref(
                (x / math.sqrt(var)).float(),
                torch.full((4,), math.log(sigma) / 4, dtype=torch.float64),
                labels=one_hot.float(),
            ).double()
            expected = sd**2 / var * x + sigma * sd / math.sqrt(var) * F_x
            got_int = teacher(x.float(), sigma, labels=labels).double()
            got_hot = teacher(x.float(), sigma, labels=one_hot.float()).double()
        scale = expected.abs().max()
        assert (got_int - expected).abs().max() <= 2e-5 * scale, sigma
        assert torch.equal(got_int, got_hot)
    with torch.no_grad():  # the label matters
        assert not torch.allclose(
            teacher(x.float(), 1.0, labels=labels), teacher(x.float(), 1.0, labels=labels.flip(0))
        )


def test_ve_ddpmpp_pickle_uses_ve_preconditioning(tmp_path, monkeypatch):
    from scoremix.teachers.edm_pickle import load_edm_pickle

    net = _build_ddpmpp()
    path = write_edm_pickle(
        tmp_path / "edm-tiny-ve-ddpmpp.pkl",
        monkeypatch,
        net,
        "VEPrecond",
        "SongUNet",
        DDPM_ARGS,
        dict(sigma_min=0.02, sigma_max=100),
    )
    teacher = load_edm_pickle(str(path))
    assert teacher.info["precond"] == "ve" and (teacher.info["sigma_min"], teacher.info["sigma_max"]) == (0.02, 100)
    ref = _build_ddpmpp()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    sigma = 3.0
    with torch.no_grad():
        expected = x + sigma * ref(x.float(), torch.full((2,), math.log(sigma / 2), dtype=torch.float64)).double()
        got = teacher(x.float(), sigma).double()
    assert (got - expected).abs().max() <= 2e-5 * expected.abs().max()


# ---------------------------------------------------------------------------------------------------------
# Refusals


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("attack", ["os.system", "builtins.exec", "subprocess.Popen", "eval-in-tensor-slot"])
def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, monkeypatch, marker, attack):
    from scoremix.teachers import load_teacher

    touch = f"open({str(marker)!r}, 'w').write('x')"
    payload = {
        "os.system": _Reduce(os.system, (f"touch {marker}",)),
        "builtins.exec": _Reduce(exec, (touch,)),
        "subprocess.Popen": _Reduce(subprocess.Popen, ([sys.executable, "-c", touch],)),
        "eval-in-tensor-slot": _Reduce(eval, (touch,)),
    }[attack]

    def plant(state):  # hide the payload inside the network, where a tensor would be
        if attack == "eval-in-tensor-slot":
            state["_modules"]["map_layer0"].state["_parameters"]["weight"] = payload

    extra = {} if attack == "eval-in-tensor-slot" else {"dataset_kwargs": {"path": payload}}
    path = write_edm_pickle(
        tmp_path / "evil.pkl",
        monkeypatch,
        _build_ddpmpp(),
        "VPPrecond",
        "SongUNet",
        DDPM_ARGS,
        VP_STATE,
        edit_state=plant,
        extra=extra,
    )
    with pytest.raises(TeacherError) as err:
        load_teacher(str(path))
    message = str(err.value)
    assert "\n" not in message and "refused" in message and "could run code" in message
    assert {
        "os.system": "system",
        "builtins.exec": "builtins.exec",
        "subprocess.Popen": "subprocess.Popen",
        "eval-in-tensor-slot": "builtins.eval",
    }[attack] in message
    # `marker` fixture: the file was never created


def test_plain_pickle_load_of_the_same_file_would_have_run_the_embedded_code(tmp_path, monkeypatch, marker):
    """Control: the embedded source of the test files does run under an unrestricted reconstruct, so the
    loader tests above would notice if the loader executed it."""
    net = _build_ddpmpp()
    path = write_edm_pickle(
        tmp_path / "edm.pkl",
        monkeypatch,
        net,
        "VPPrecond",
        "SongUNet",
        DDPM_ARGS,
        VP_STATE,
        module_src=_marker_source(marker),
    )
    sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj.__code__ = (
        lambda meta: exec(meta["module_src"], {})
    ).__code__
    with open(path, "rb") as f:
        pickle.load(f)
    assert marker.exists()
    marker.unlink()


def _probe_module(monkeypatch, marker):
    """An importable module whose `touch()` creates the marker file: what an EXT opcode would call."""
    module = types.ModuleType("scoremix_ext_probe")

    def touch(*args):
        marker.write_text("an extension-registry callable ran")

    touch.__module__, touch.__qualname__ = "scoremix_ext_probe", "touch"
    module.touch = touch
    monkeypatch.setitem(sys.modules, "scoremix_ext_probe", module)


@pytest.mark.parametrize("opcode, code", [(pickle.EXT1, 241), (pickle.EXT2, 0xF1F1), (pickle.EXT4, 0x7F00F1F1)])
def test_ext_opcodes_are_refused_even_when_copyregs_cache_holds_the_callable(
    tmp_path, monkeypatch, marker, opcode, code
):
    """EXT1/EXT2/EXT4 push copyreg's cached extension objects without asking find_class: once any earlier
    unpickling in the process has resolved the code, an allow-list in find_class alone is bypassed."""
    import copyreg
    import struct

    from scoremix.teachers.safe_pickle import safe_load

    _probe_module(monkeypatch, marker)
    width = {pickle.EXT1: "<B", pickle.EXT2: "<H", pickle.EXT4: "<i"}[opcode]
    ext = opcode + struct.pack(width, code)
    copyreg.add_extension("scoremix_ext_probe", "touch", code)
    try:
        assert pickle.loads(pickle.PROTO + b"\x02" + ext + pickle.STOP) is sys.modules["scoremix_ext_probe"].touch
        path = tmp_path / "ext.pkl"  # touch() called through the cached extension
        path.write_bytes(pickle.PROTO + b"\x02" + ext + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.STOP)
        with pytest.raises(TeacherError, match="EXT1/EXT2/EXT4") as err:
            safe_load(str(path))
        assert "\n" not in str(err.value) and "refused" in str(err.value)
    finally:
        copyreg.remove_extension("scoremix_ext_probe", "touch", code)
    # `marker` fixture: touch() never ran


@pytest.mark.parametrize("state", ["dict", "slots"])
def test_build_on_an_allowed_function_is_refused(tmp_path, state):
    """BUILD would set attributes on one of the loader's own rebuild functions (process-wide, e.g. its
    __kwdefaults__); only recorded network objects and containers take state."""
    from scoremix.teachers import safe_pickle

    def text(value: str) -> bytes:
        return pickle.SHORT_BINUNICODE + bytes([len(value)]) + value.encode()

    function = pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n"
    if state == "dict":
        payload = pickle.EMPTY_DICT + text("planted") + pickle.NEWTRUE + pickle.SETITEM
    else:  # (None, {"__kwdefaults__": {"metadata": "planted"}}): setattr on the function
        inner = pickle.EMPTY_DICT + text("metadata") + text("planted") + pickle.SETITEM
        payload = pickle.NONE + pickle.EMPTY_DICT + text("__kwdefaults__") + inner + pickle.SETITEM + pickle.TUPLE2
    path = tmp_path / "build.pkl"
    path.write_bytes(pickle.PROTO + b"\x02" + function + payload + pickle.BUILD + pickle.STOP)
    kwdefaults = safe_pickle._rebuild_tensor.__kwdefaults__
    try:
        with pytest.raises(TeacherError, match="BUILD") as err:
            safe_pickle.safe_load(str(path))
        assert "\n" not in str(err.value) and "function" in str(err.value)
        assert not hasattr(safe_pickle._rebuild_tensor, "planted")
        assert safe_pickle._rebuild_tensor.__kwdefaults__ == kwdefaults
    finally:
        safe_pickle._rebuild_tensor.__dict__.pop("planted", None)
        safe_pickle._rebuild_tensor.__kwdefaults__ = kwdefaults


def test_torch_floor_is_declared_and_checked(tmp_path, monkeypatch):
    """torch < 2.10 has published flaws in the weights_only loader that reads the storages: pyproject.toml
    requires 2.10 and the loader refuses an older torch before reading anything."""
    import re

    import tomllib

    from scoremix.teachers import safe_pickle

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    (torch_dep,) = [d for d in deps if re.match(r"torch\b", d)]
    floor = re.fullmatch(r"torch>=(\d+)\.(\d+)", torch_dep.replace(" ", ""))
    assert floor and tuple(map(int, floor.groups())) == safe_pickle.MIN_TORCH >= (2, 10)

    path = write_edm_pickle(
        tmp_path / "edm.pkl", monkeypatch, _build_ddpmpp(), "VPPrecond", "SongUNet", DDPM_ARGS, VP_STATE
    )
    for old in ("2.5.1", "2.9.1+cu128", "2.10.0a0"):
        monkeypatch.setattr(torch, "__version__", old)
        with pytest.raises(TeacherError, match=r"install torch>=2\.10") as err:
            safe_pickle.safe_load(str(path))
        assert old in str(err.value) and "\n" not in str(err.value)
    for ok in ("2.10.0", "2.13.0+cpu"):
        monkeypatch.setattr(torch, "__version__", ok)
        assert isinstance(safe_pickle.safe_load(str(path)), dict)


def test_shape_mismatch_is_refused_with_the_parameter_name(tmp_path, monkeypatch):
    from scoremix.teachers.edm_pickle import load_edm_pickle

    def shrink(state):
        conv = state["_modules"]["enc"].__dict__["_modules"]["8x8_conv"]
        conv.state["_parameters"]["weight"] = torch.nn.Parameter(torch.zeros(16, 3, 1, 1))

    path = write_edm_pickle(
        tmp_path / "bad-shape.pkl",
        monkeypatch,
        _build_ddpmpp(),
        "VPPrecond",
        "SongUNet",
        DDPM_ARGS,
        VP_STATE,
        edit_state=shrink,
    )
    with pytest.raises(
        TeacherError, match=r"model\.enc\.8x8_conv\.weight has shape \(16, 3, 1, 1\) but a ddpmpp"
    ) as err:
        load_edm_pickle(str(path))
    assert "\n" not in str(err.value)


def test_missing_and_extra_parameters_are_refused(tmp_path, monkeypatch):
    from scoremix.teachers.edm_pickle import load_edm_pickle

    def drop(state):
        del state["_modules"]["map_layer1"].state["_parameters"]["bias"]

    path = write_edm_pickle(
        tmp_path / "missing.pkl",
        monkeypatch,
        _build_ddpmpp(),
        "VPPrecond",
        "SongUNet",
        DDPM_ARGS,
        VP_STATE,
        edit_state=drop,
    )
    with pytest.raises(TeacherError, match=r"lacks model\.map_layer1\.bias"):
        load_edm_pickle(str(path))

    args = dict(DDPM_ARGS, num_blocks=2)  # recorded settings disagree with the weights
    path = write_edm_pickle(
        tmp_path / "wrong-args.pkl", monkeypatch, _build_ddpmpp(), "VPPrecond", "SongUNet", args, VP_STATE
    )
    with pytest.raises(TeacherError, match="lacks model.enc.8x8_block1"):
        load_edm_pickle(str(path))


@pytest.mark.parametrize(
    "precond_class, model_class, args, match",
    [
        ("iDDPMPrecond", "SongUNet", DDPM_ARGS, "iDDPMPrecond' is not supported"),
        ("MysteryPrecond", "SongUNet", DDPM_ARGS, "'MysteryPrecond' is not supported"),
        ("VPPrecond", "StyleGAN", DDPM_ARGS, "'StyleGAN' is not supported"),
        (
            "VEPrecond",
            "SongUNet",
            dict(
                DDPM_ARGS,
                embedding_type="fourier",
                channel_mult_noise=2,
                encoder_type="residual",
                resample_filter=[1, 3, 3, 1],
            ),
            "NCSN\\+\\+ .*not supported",
        ),
        ("VPPrecond", "SongUNet", dict(DDPM_ARGS, mystery_option=True), "mystery_option"),
    ],
)
def test_unknown_classes_and_architectures_are_refused(tmp_path, monkeypatch, precond_class, model_class, args, match):
    from scoremix.teachers.edm_pickle import load_edm_pickle

    path = write_edm_pickle(
        tmp_path / "other.pkl", monkeypatch, _build_ddpmpp(), precond_class, model_class, args, VP_STATE
    )
    with pytest.raises(TeacherError, match=match) as err:
        load_edm_pickle(str(path))
    assert "\n" not in str(err.value)


def test_non_default_vp_constants_and_non_edm_files_are_refused(tmp_path, monkeypatch):
    from scoremix.teachers.edm_pickle import load_edm_pickle

    path = write_edm_pickle(
        tmp_path / "vp-other.pkl",
        monkeypatch,
        _build_ddpmpp(),
        "VPPrecond",
        "SongUNet",
        DDPM_ARGS,
        dict(VP_STATE, beta_d=10.0),
    )
    with pytest.raises(TeacherError, match="VP constants"):
        load_edm_pickle(str(path))

    plain = tmp_path / "plain.pkl"
    with open(plain, "wb") as f:
        pickle.dump({"weights": torch.ones(3)}, f)
    with pytest.raises(TeacherError, match="'ema' entry"):
        load_edm_pickle(str(plain))

    module_pickle = tmp_path / "module.pkl"
    with open(module_pickle, "wb") as f:
        pickle.dump({"ema": torch.nn.Linear(2, 2)}, f)  # a real torch module class is not on the allow-list
    with pytest.raises(TeacherError, match="torch.nn.modules.linear.Linear"):
        load_edm_pickle(str(module_pickle))

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(TeacherError, match="not a readable EDM network pickle"):
        load_edm_pickle(str(garbage))
