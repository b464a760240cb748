"""A request becomes a plan: names resolved, compatibility and weights decided, limits and
content rules applied, before any GPU work.

    planner       Planner.plan(DrawRequest) -> DrawPlan
    checkpoints   which checkpoint draws, and whose VAE it borrows when it has none
    params        seed, steps, size, cfg: defaults and limits
    prompt_checks length, emptiness and A1111 weight syntax, before any parsing or GPU work
    lora_weights  the LoRA weight policy (clamping, 0 = not applied, `<lora:...>` tags,
                  the note for a weight outside the author's range)
    trigger_words whether a LoRA's trigger words are in the prompt, and the warning if not

Nothing is imported here: engine.requests imports lora_weights, and the planner imports
engine.requests.
"""
