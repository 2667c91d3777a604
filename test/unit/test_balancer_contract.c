/* Runs the balancer contract (balancer_contract.h) for every registered
 * balancer. A new balancer is one line in `subjects`. */
#include "balancer_contract.h"

static struct sr_contract_subject subjects[] = {
    /* name, weights, keeps_keys, seed */
    {"round_robin", SR_CONTRACT_WEIGHTS_IGNORED, false, NULL, NULL},
    {"weighted_round_robin", SR_CONTRACT_WEIGHTS_PROPORTIONAL, false, NULL, NULL},
    {"fixed", SR_CONTRACT_WEIGHTS_PROPORTIONAL, true, NULL, NULL},
    /* power of two choices: with no load, the heavier of two candidates wins */
    {"least_loaded", SR_CONTRACT_WEIGHTS_FAVOUR, false, sr_least_loaded_seed, NULL},
};

int main(void)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++)
        failed += sr_contract_run(&subjects[i]);
    return failed;
}
