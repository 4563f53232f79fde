/srv/models/m
/srv/out/o"
zfold@P*
/srv/data/c.txt (@@