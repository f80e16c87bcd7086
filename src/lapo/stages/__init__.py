"""The paper's stages, one module each: collect, expert, lam (stage 1), bc (stage 2), decode
(stage 3 offline, with pseudo_label), finetune (stage 3 online)."""
