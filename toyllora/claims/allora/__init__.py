"""ALLoRA head to head: every variant on equal footing (:mod:`toyllora.protocol`), and ALLoRA's mechanisms."""
