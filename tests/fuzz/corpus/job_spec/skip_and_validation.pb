/srv/models/m
/srv/out/o"&
gptq bmlp.down_projbself_attn.**
/srv/data/c.txt (@@2
/srv/data/v.txtZ €(