/srv/models/m
/srv/out/o"
gptqÿÿÿÿÿÿÿÿÿ8*
/srv/data/c.txt (@@