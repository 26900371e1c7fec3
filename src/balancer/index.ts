export { pickReplica, pickWeighted, cumulativeWeights, type Balanced } from './replica-pick.js';
