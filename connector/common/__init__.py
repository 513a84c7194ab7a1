"""What every part of splade-os shares: its errors, the optional extras, atomic files, the cache
folder and progress output. Imports nothing else of splade-os."""
