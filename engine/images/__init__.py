"""Pictures going into the engine: a user's image for image-to-image, the generation
parameters a PNG carries (A1111, ComfyUI, CivitAI, Loracle itself) and what they match."""
