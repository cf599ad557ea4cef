"""Claims of the LoRA variants ALLoRA is compared with (rsLoRA's rank-stable scaling), tested on their own."""
