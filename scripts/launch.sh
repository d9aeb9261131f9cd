#!/usr/bin/env bash
# Shared body of the ft_*.sh launchers: train with MoS (or another registered method), then run the task's
# evaluations on the run's adapter. The top-level launchers set TASK (superni | flan_v2 | cot | code),
# MODEL_DEFAULT, RUN_PREFIX, EVAL_BATCH_SIZE_DEFAULT and TRAIN_LENGTH_ARGS, then source this file.
#
# Python (open_instruct/launch.py) checks the arguments and the environment overrides, prints the usage, finds the
# device, checks or creates the run directory (with its run.json) and builds the training and evaluation commands;
# this file runs them: in the background, passing preemption signals on, one launch per run directory at a time.
#
# Run directories are never shared or reused by accident: each launch creates a new one exclusively, a resume
# (RUN_DIR=<run dir>) trains and evaluates in exactly that directory, and a run marked `completed` is refused.

LAUNCHER_DIR=$(cd "$(dirname "$0")" && pwd)
LAUNCHER_NAME=$(basename "$0")
CALLER_DIR=$PWD
ARGS=("$@")
PYTHON=${PYTHON:-python}
if [[ "$PYTHON" == */* ]]; then PYTHON=$(realpath -ms -- "$PYTHON" 2>/dev/null || printf '%s' "$PYTHON"); fi

die() { echo "error: $*" >&2; exit 2; }

cd "$LAUNCHER_DIR"
SPEC=$("$PYTHON" -m open_instruct.launch spec --launcher "$LAUNCHER_NAME" --launcher-dir "$LAUNCHER_DIR" \
         --caller-dir "$CALLER_DIR" --task "$TASK" --model-default "$MODEL_DEFAULT" --run-prefix "$RUN_PREFIX" \
         --eval-batch-size-default "$EVAL_BATCH_SIZE_DEFAULT" --train-length "$TRAIN_LENGTH_ARGS" \
         --python "$PYTHON" -- "$@") \
  || { status=$?; [ "$status" = 2 ] && exit 2
       die "cannot run $PYTHON -m open_instruct.launch (exit $status); activate the project's environment (bash scripts/bootstrap.sh) or set PYTHON"; }
eval "$SPEC"  # out, RUN_STATE, DRY_RUN, SKIP_EVAL, EVAL_ONLY, MACHINE_RANK, TRAIN_CMD, task_evaluate

rerun_hint() {  # how to continue this run ($1: what to prefix, e.g. EVAL_ONLY=1)
  printf '%sRUN_DIR=%q bash %q' "${1:+$1 }" "$out" "$LAUNCHER_DIR/$LAUNCHER_NAME"
  printf ' %q' "${ARGS[@]}"
}

case "$RUN_STATE" in
  resumed)
    if [ -e "$out/completed" ] && [ "$EVAL_ONLY" = 0 ]; then
      die "RUN_DIR $out holds a completed run (marked by $out/completed); the launcher does not touch it. Start a new run without RUN_DIR, or run its missing evaluations with $(rerun_hint EVAL_ONLY=1)"
    fi
    [ "$EVAL_ONLY" = 0 ] || [ -e "$out/completed" ] \
      || die "EVAL_ONLY=1: RUN_DIR $out has no finished training (no $out/completed); resume it without EVAL_ONLY"
    echo "[launcher] run directory (resumed): $out" ;;
  dry) echo "[launcher] run directory (dry run, not created): $out" ;;
  *) echo "[launcher] run directory: $out" ;;
esac

LOCK="$out/.launcher.lock"; [ "$MACHINE_RANK" = 0 ] || LOCK="$out/.launcher.lock.machine$MACHINE_RANK"
if [ "$DRY_RUN" = 0 ] && command -v flock >/dev/null; then  # one launch per run directory (and machine) at a time
  exec 9>>"$LOCK"   # held by this launch and its children, released when they exit (even by kill -9)
  flock -n 9 || die "another launch is still running in $out (it holds $LOCK); wait for it or stop it first"
fi

run_step() {  # run_step WHAT CMD...: print it in a dry run, else run it, passing SIGTERM / SIGUSR1 / SIGINT on
  local what=$1; shift
  if [ "$DRY_RUN" = 1 ]; then printf '[dry-run] %s:' "$what"; printf ' %q' "$@"; printf '\n'; return 0; fi
  echo "[launcher] $what in $out"
  # In the background so that the launcher can pass a preemption signal on (a background command ignores SIGINT,
  # so Ctrl-C is passed on as SIGTERM: a clean stop). The child may get a signal twice (once from the process
  # group, once from here): the trainer and the evaluators act on the first and ignore repeats.
  "$@" &
  local child=$! status
  trap 'kill -TERM "$child" 2>/dev/null' TERM INT
  trap 'kill -USR1 "$child" 2>/dev/null' USR1
  while :; do
    wait "$child"; status=$?
    kill -0 "$child" 2>/dev/null || break  # wait returned early for a trapped signal: the child still runs
  done
  trap - TERM INT USR1
  return "$status"
}

if [ "$EVAL_ONLY" = 0 ]; then
  run_step training "${TRAIN_CMD[@]}" \
  || { status=$?
       if [ "$status" = 75 ]; then  # SIGTERM / SIGUSR1: a complete checkpoint was saved and the run marked preempted
         echo "[launcher] training was preempted (a signal stopped it after saving a checkpoint; $out/preempted); to resume: $(rerun_hint)" >&2
         exit 75
       fi
       if compgen -G "$out/checkpoint-*/trainer_state.json" >/dev/null; then
         die "training failed (exit $status; see $out/run.log); to resume from its last checkpoint: $(rerun_hint)"
       fi
       die "training failed (exit $status) before any checkpoint was written; see $out/run.log (nothing to resume)"; }
fi

[ "$SKIP_EVAL" = 1 ] && { echo "[launcher] done (SKIP_EVAL=1: not evaluated): $out"; exit 0; }
[ "$MACHINE_RANK" = 0 ] || { echo "[launcher] machine $MACHINE_RANK: training done; machine 0 evaluates $out"; exit 0; }

# The evaluations of the task, on the base model with the run's adapter; never over results already there.
evaluate() {  # evaluate NAME SAVE_DIR CMD...: skip a finished one, explain a failure
  local name=$1 save_dir=$2; shift 2
  if [ "$DRY_RUN" = 0 ] && [ -f "$save_dir/metrics.json" ]; then
    echo "[launcher] $name: $save_dir/metrics.json already exists, not evaluating again"; return 0
  fi
  run_step "$name evaluation" "$@" || { local status=$?
    if [ "$status" = 75 ]; then
      echo "[launcher] $name evaluation was stopped by a signal (finished parts are kept); to continue: $(rerun_hint EVAL_ONLY=1)" >&2
      exit 75
    fi
    die "$name evaluation failed; the trained adapter is in $out; to run the missing evaluations: $(rerun_hint EVAL_ONLY=1)"; }
}
task_evaluate
if [ "$DRY_RUN" = 1 ]; then echo "[launcher] dry run: nothing was run or created"; else echo "[launcher] done: $out"; fi
