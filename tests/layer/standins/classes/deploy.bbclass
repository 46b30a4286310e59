# Stand-in for oe-core's meta/classes-recipe/deploy.bbclass (tests/layer): do_deploy writes into
# DEPLOYDIR, which BitBake copies to DEPLOY_DIR_IMAGE.
do_deploy[dirs] = "${B}"
do_deploy[cleandirs] = "${DEPLOYDIR}"
