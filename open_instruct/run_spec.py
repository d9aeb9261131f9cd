"""One typed description of a launcher run (:class:`RunSpec`), saved as ``run.json`` in its run directory.

The launchers build it from their ten positional arguments and environment overrides
(``open_instruct.launch``), check it once, and write it before training starts. Downstream readers take the
facts from it: a resume must repeat the arguments it records (:meth:`RunSpec.signature`), and the summarizers
read the method and its settings from it (:func:`hyperparameters`). The run directory's name is for people; it
is parsed only for runs made before ``run.json`` existed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from open_instruct.errors import UserError
from open_instruct.files import write_text_atomic

RUN_JSON = "run.json"
LEGACY_SIGNATURE = "launcher_args.txt"  # what a resume had to match before run.json (old run directories)
# The launcher's ten positional arguments, in order.
POSITIONAL = ("lora_r", "seed", "GPU_ID", "learning_rate", "finetune_mode", "init_lora_A_vec_value",
              "init_lora_A_vec_std", "valid_param_private_r", "valid_param_lora_r", "num_chunk_per_vec")

# How the positional arguments appear in a resume's signature and in the run directory's name.
SIGNATURE_KEYS = (("lora_r", "lora_r"), ("seed", "seed"), ("lr", "learning_rate"), ("mode", "finetune_mode"),
                  ("vec_value", "init_lora_A_vec_value"), ("vec_std", "init_lora_A_vec_std"),
                  ("p", "valid_param_private_r"), ("e", "valid_param_lora_r"), ("c", "num_chunk_per_vec"))
NAME_KEYS = (("GPU", "GPU_ID"), ("r", "lora_r"), ("lr", "learning_rate"), ("sd", "seed"), ("ft_mode", "finetune_mode"),
             *((name, name) for name in POSITIONAL[5:9]), ("num_chunk", "num_chunk_per_vec"))


@dataclass(frozen=True)
class MethodSpec:
    """The method (``finetune_mode``) and the launcher arguments that configure it (``open_instruct.methods``)."""

    name: str
    lora_r: int
    init_lora_A_vec_value: float
    init_lora_A_vec_std: float
    valid_param_private_r: int
    valid_param_lora_r: int
    num_chunk_per_vec: int


@dataclass(frozen=True)
class DataSpec:
    train_file: str
    train_format: str = "auto"  # auto | instruction | text
    chat_format: str = "tulu"  # tulu | tokenizer
    max_seq_length: int = 512
    max_eval_samples: int = 1024  # held out of the training file; 0 turns the held-out evaluation off
    packing: bool = False


@dataclass(frozen=True)
class TrainingSpec:
    seed: int
    learning_rate: float
    batch_size: int = 16
    train_length: tuple[str, ...] = ("--max_steps", "10000")  # how long: --max_steps N or --num_train_epochs N
    eval_steps: int = 1000
    save_steps: int = 1000
    logging_steps: int = 10
    device: str = "cpu"  # cuda | cpu
    precision: str = "fp32"  # fp32 | bf16
    use_qlora: bool = False
    gpu_ids: str = "0"
    num_gpus: int = 0
    num_machines: int = 1
    extra_args: tuple[str, ...] = ()  # more finetune_trainer flags (EXTRA_ARGS)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the run's adapter: ``python -m <module> <args> --save_dir <run dir>/<save_dir>
    <post_args> <base model + adapter flags> [--use_vllm] <extra_args>``."""

    name: str
    save_dir: str  # relative to the run directory
    module: str
    args: tuple[str, ...] = ()
    post_args: tuple[str, ...] = ()
    vllm: bool = False  # takes --use_vllm (USE_VLLM=1)
    extra_args: tuple[str, ...] = ()  # the task's extra flags (MMLU_ARGS, ...)


@dataclass(frozen=True)
class RunSpec:
    """A launcher run: which launcher and task, the method, the model, the data, training, the evaluations."""

    launcher: str  # e.g. ft_llama2_7b_superni_mmlu.sh
    task: str  # superni | flan_v2 | cot | code
    run_prefix: str  # the run directory's name starts with it (below OUTPUT_ROOT)
    started: str  # %Y%m%d-%H%M%S, the time in the run directory's name
    positional: tuple[str, ...]  # the ten positional arguments as given (they name the run)
    method: MethodSpec
    model: str
    data: DataSpec
    training: TrainingSpec
    evaluations: tuple[Evaluation, ...] = ()
    eval_data_dir: str = "data/eval"
    eval_batch_size: int = 16
    version: int = 1

    def signature(self) -> str:
        """What a resume must repeat (the GPU may change between attempts); the format of ``launcher_args.txt``."""
        a = dict(zip(POSITIONAL, self.positional))
        return " ".join([f"launcher={self.launcher}", *(f"{key}={a[arg]}" for key, arg in SIGNATURE_KEYS),
                         f"model={self.model}"])

    def name_tail(self) -> str:
        """The run directory's name after the prefix and time: the positional arguments, for people to read."""
        a = dict(zip(POSITIONAL, self.positional))
        return "_".join(f"{key}_{a[arg]}" for key, arg in NAME_KEYS)

    def run_name(self) -> str:
        """The run directory's path below OUTPUT_ROOT."""
        return f"{self.run_prefix}_{self.started}_{self.name_tail()}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["method"] = MethodSpec(**values["method"])
        values["data"] = DataSpec(**values["data"])
        values["training"] = TrainingSpec(**_tuples(values["training"]))
        values["evaluations"] = tuple(Evaluation(**_tuples(e)) for e in values.get("evaluations", ()))
        values["positional"] = tuple(values["positional"])
        return cls(**values)


def _tuples(record: dict) -> dict:
    """JSON lists back to the tuples of the frozen dataclasses."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}


def write_run_spec(spec: RunSpec, run_dir: str | Path) -> Path:
    """``run_dir/run.json``, written whole or not at all (a reader never sees half of it)."""
    return write_text_atomic(Path(run_dir) / RUN_JSON, spec.to_json())


def read_run_spec(run_dir: str | Path) -> RunSpec | None:
    """The ``RunSpec`` in ``run_dir/run.json``; ``None`` for a run directory without one (made before it
    existed); ``UserError`` naming the file when it cannot be read."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        return None
    try:
        return RunSpec.from_dict(json.loads(path.read_text(encoding="utf-8-sig")))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a run description written by the launcher ({type(err).__name__}: "
                        f"{str(err)[:200]}); restore it, or remove it to treat the directory as an old run") from None


def run_spec_of_adapter(adapter_dir: str | Path) -> tuple[Path, RunSpec] | None:
    """The ``run.json`` of the run an adapter directory belongs to, as ``(path, spec)``: the run directory itself
    (its exported plain LoRA adapter) or its parent (the method's own checkpoint, ``<run>/mos_adapter``). ``None``
    when neither has one (an adapter from elsewhere, or a run made before ``run.json``)."""
    adapter_dir = Path(adapter_dir)
    for run_dir in (adapter_dir, adapter_dir.parent):
        spec = read_run_spec(run_dir)
        if spec is not None:
            return run_dir / RUN_JSON, spec
    return None


def hyperparameters(spec: RunSpec) -> dict:
    """The summarizers' hyperparameter columns (r, seed, lr, ft_mode, p, e, c) of a run."""
    m = spec.method
    return {"r": m.lora_r, "seed": spec.training.seed, "lr": spec.training.learning_rate, "ft_mode": m.name,
            "p": m.valid_param_private_r, "e": m.valid_param_lora_r, "c": m.num_chunk_per_vec}
