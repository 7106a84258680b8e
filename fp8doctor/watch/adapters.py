"""PEFT (LoRA) in a watched run: which of the prepared model's FP8 layers are LoRA base layers, which are adapters
(lora_A/lora_B), and which are the model's other layers, read from the layer names the observer recorded after
`prepare`. What the lab saw LoRA do over torchao FP8 is fp8doctor.knowledge.frontends' (predict_peft)."""

from __future__ import annotations

from typing import Any

ADAPTER_PARTS = (".lora_A.", ".lora_B.", ".lora_embedding_A.", ".lora_embedding_B.")


def _is_adapter(name: str) -> bool:
    return any(part in f".{name}." for part in ADAPTER_PARTS)


def _peft_models(procs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        for acc in proc.get("accelerators") or []:
            for prep in acc.get("prepares") or []:
                for model in prep.get("models") or []:
                    names = [*(model.get("fp8_layers") or []), *(model.get("eligible") or [])]
                    if str(model.get("class", "")).startswith("Peft") or any(_is_adapter(n) for n in names):
                        out.append(model)
    return out


def lora_summary(procs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last prepared PEFT model's FP8 layers by role (None: no PEFT model was prepared)."""
    models = [m for m in _peft_models(procs) if "fp8_layers" in m]
    if not models:
        return None
    model = models[-1]
    fp8 = list(model.get("fp8_layers") or [])
    adapters = [n for n in fp8 if _is_adapter(n)]
    bases = [n for n in fp8 if n.endswith(".base_layer")]
    return {"class": model.get("class"), "fp8_layers": len(fp8), "base_layers_fp8": len(bases),
            "adapters_fp8": len(adapters), "other_fp8": len(fp8) - len(adapters) - len(bases)}


def lora_words(summary: dict[str, Any]) -> str:
    """One line for `watch`'s details (whether FP8 adapters train is the verdict's: the optimizer's hold on them)."""
    return (f"PEFT LoRA ({summary['class']}): {summary['fp8_layers']} FP8 layers: {summary['base_layers_fp8']} LoRA "
            f"base layers, {summary['adapters_fp8']} adapter layers (lora_A/lora_B), {summary['other_fp8']} others")
