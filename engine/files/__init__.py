"""What a model file is, decided once at scan time and trusted afterwards.

header      the safetensors header (the one header type), read without the tensors
sniff       what a file that is not safetensors really is (pickle, zip, GGUF, image, text)
lora_keys   the LoRA key grammar and kind rule, shared by the scanner and engine/lora
classify    checkpoint anatomy: architecture (the one width table), v-prediction, VAE
lora_classify, lora_sanity   LoRA anatomy, and LoRAs refused before they reach a GPU
training    training metadata (kohya ss_*, modelspec.*), with bounded numbers
hashing     SHA256 / AutoV1 / AutoV2 / AutoV3 in one streaming pass
modelfile   inspect_path: all of the above for one file or diffusers folder
"""
