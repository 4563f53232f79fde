/srv/models/m
/srv/out/o"
gptqùÿÿÿÿÿÿÿÿ*
/srv/data/c.txt (@@