"""Module-type discovery: which adapted modules share a pool (``q_proj`` of every layer, ...), by name and shape."""

from __future__ import annotations

from collections import defaultdict


def split_module_name(name: str) -> tuple[str, int, str]:
    """``model.layers.3.self_attn.q_proj`` -> (``model.layers``, 3, ``self_attn.q_proj``).

    The layer index is the first purely numeric component (a ModuleList position); a module outside any
    layer list (e.g. ``lm_head``) is its own type with a single "layer" 0.
    """
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[:i]), int(part), ".".join(parts[i + 1 :])
    return "", 0, name


def group_by_module_type(names: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Group module names into types; returns ``{type_key: [(layer_index, name), ...]}`` sorted by layer.

    The key is the short leaf name (``q_proj``) when that is unambiguous, else the path after the layer index,
    else the full pattern; dots become ``__`` so the key can name a submodule.
    """
    full = defaultdict(list)
    for name in names:
        prefix, layer, suffix = split_module_name(name)
        full[(prefix, suffix)].append((layer, name))
    keys = list(full)

    def unique(fn):
        labels = [fn(k) for k in keys]
        return labels if len(set(labels)) == len(labels) else None

    labels = (
        unique(lambda k: k[1].split(".")[-1])
        or unique(lambda k: k[1])
        or [f"{p}.N.{s}" if p else s for p, s in keys]
    )
    return {label.replace(".", "__"): sorted(full[k]) for label, k in zip(labels, keys)}


def group_same_shape(shapes: dict[str, tuple[int, int]], method: str) -> dict[str, tuple[list[str], int, int]]:
    """``{name: (in, out)}`` -> ``{type_key: (names in layer order, in, out)}``, refusing a type of mixed shapes."""
    if not shapes:
        raise ValueError(f"{method} matched no module; check target_modules (e.g. 'all-linear' or ['q_proj', 'v_proj']).")
    groups = {}
    for type_key, members in sorted(group_by_module_type(list(shapes)).items()):
        names = [name for _, name in members]
        kinds = {shapes[name] for name in names}
        if len(kinds) != 1:
            detail = ", ".join(f"{n}: in={shapes[n][0]} out={shapes[n][1]}" for n in names)
            raise ValueError(
                f"{method} shares parameters per module type, but the modules of type {type_key!r} differ in shape "
                f"({detail}). Exclude the odd ones (exclude_modules) or target types of one shape."
            )
        (in_f, out_f), = kinds
        groups[type_key] = (names, in_f, out_f)
    return groups
