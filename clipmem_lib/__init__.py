"""clipmem_lib: the helper library behind the CLIPMem companion book (Wang et al., ICLR 2025)."""
