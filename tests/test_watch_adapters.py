"""fp8doctor.watch.adapters on typed records (the real PEFT run is tests/test_watch_peft.py): the FP8 layers of a
prepared PEFT model counted by role, from the names the observer records after `prepare`."""

from __future__ import annotations

from fp8doctor.watch.adapters import lora_summary, lora_words

BASE = "base_model.model.model.layers.{}.self_attn.{}"


def _proc(cls: str, fp8: list[str], eligible: list[str] | None = None) -> dict:
    model = {"class": cls, "arg_index": 0, "fp8_layers": fp8, "eligible": eligible or fp8}
    return {"accelerators": [{"prepares": [{"models": [model]}]}]}


def test_fp8_layers_by_role() -> None:
    fp8 = [BASE.format(1, "q_proj.base_layer"), BASE.format(1, "q_proj.lora_A.default"),
           BASE.format(1, "q_proj.lora_B.default"), BASE.format(1, "k_proj")]
    s = lora_summary([_proc("PeftModel", fp8)])
    assert s == {"class": "PeftModel", "fp8_layers": 4, "base_layers_fp8": 1, "adapters_fp8": 2, "other_fp8": 1}
    assert lora_words(s) == ("PEFT LoRA (PeftModel): 4 FP8 layers: 1 LoRA base layers, 2 adapter layers "
                             "(lora_A/lora_B), 1 others")
    s = lora_summary([_proc("PeftModel", fp8[:1] + fp8[3:])])
    assert s is not None and s["adapters_fp8"] == 0 and s["other_fp8"] == 1


def test_no_peft_model_no_summary() -> None:
    assert lora_summary([_proc("LlamaForCausalLM", ["model.layers.1.self_attn.k_proj"])]) is None
    assert lora_summary([]) is None
    # a model class renamed by a wrapper still counts when its layers carry LoRA adapters
    assert lora_summary([_proc("Wrapped", [BASE.format(1, "q_proj.lora_A.default")])]) is not None
