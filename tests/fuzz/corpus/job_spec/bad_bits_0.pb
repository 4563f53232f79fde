/srv/models/m
/srv/out/o"
gptq*
/srv/data/c.txt (@@