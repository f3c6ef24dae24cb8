"""Model code shipped inside every `gisp export-vllm` folder: a DeciLM ("nemotron-nas") config that
vLLM's DeciLMForCausalLM reads, and a transformers implementation of the same layout, so the folder
also loads with `trust_remote_code=True`. Like `gisp.hf_remote`, it imports only torch and
transformers."""
